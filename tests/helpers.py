"""Shared test helpers: a synthetic separable PID problem on device arrays."""

import time

import jax.numpy as jnp
import numpy as np

from pidx.data import ArrayDataModule, TrackArrays
from pidx.data.schema import DEFAULT_LAYOUT


def separable_arrays(n, seed=0, layout=DEFAULT_LAYOUT, noise=0.3, tof_fraction=0.5):
    """Class k shifts feature k of the TPC and kinematics groups by +3: separable with margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int32)
    x = rng.normal(0, noise, (n, layout.num_features)).astype(np.float32)
    slices = dict(zip(layout.group_names, layout.group_slices))
    for g in ("tpc", "kinematics"):
        a, _ = slices[g]
        x[np.arange(n), a + y] += 3.0
    mask = np.ones((n, layout.num_groups), bool)
    mask[:, layout.group_names.index("tof")] = rng.random(n) < tof_fraction
    return TrackArrays(jnp.asarray(x), jnp.asarray(mask), jnp.asarray(y), jnp.ones(n, jnp.float32))


def detector_arrays(n, seed=0, layout=DEFAULT_LAYOUT, pair="tpc", within="tof", within_fraction=0.5, shift=3.0,
                    noise=0.3, leak=False, others_fraction=1.0):
    """A PID problem readable only through the detector groups: kinematics (and every other group)
    is noise. Group `pair` (always present) says which pair the species is in (π/K or p/e: y // 2),
    group `within` says which of the two (y % 2) and is present on `within_fraction` of the tracks.
    With `within` absent the best accuracy is 0.5; a model that ignores the detectors gets 0.25.

    Absent groups hold what preprocessing gives them (the fill 0, availability 0); with `leak` they
    hold the answer instead, which a model that respects the mask must not read. The other flagged
    groups (noise) are present on `others_fraction` of the tracks: at 1 their availability features
    are constant columns, which BatchNorm gives an exactly zero gradient.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int32)
    x = rng.normal(0, noise, (n, layout.num_features)).astype(np.float32)
    slices = dict(zip(layout.group_names, layout.group_slices))
    mask = np.ones((n, layout.num_groups), bool)
    a, _ = slices[pair]
    x[:, a] += shift * (y // 2)
    b, e = slices[within]
    present = rng.random(n) < within_fraction
    x[:, b] += shift * (y % 2)
    if not leak:
        x[~present, b:e] = 0.0
    mask[:, layout.group_names.index(within)] = present
    for g in layout.flagged_groups:
        if g.name not in (pair, within) and others_fraction < 1.0:
            absent = rng.random(n) >= others_fraction
            b, e = slices[g.name]
            x[absent, b:e] = 0.0
            mask[absent, layout.group_names.index(g.name)] = False
    for i, g in enumerate(layout.flagged_groups):  # the availability features, last, as preprocessing writes them
        x[:, layout.num_features - len(layout.flagged_groups) + i] = mask[:, layout.group_names.index(g.name)]
    return TrackArrays(jnp.asarray(x), jnp.asarray(mask), jnp.asarray(y), jnp.ones(n, jnp.float32))


def detector_datamodule(n_train=4096, n_val=1024, seed=0, layout=DEFAULT_LAYOUT, **kw):
    return ArrayDataModule(*(detector_arrays(n, seed + i, layout, **kw) for i, n in enumerate((n_train, n_val, n_val))))


def masked(arrays, layout, group):
    """The same tracks with `group` absent everywhere, as preprocessing would give them (fill 0, flag 0)."""
    g = layout.group_names.index(group)
    start, stop = layout.group_slices[g]
    x, mask = np.array(arrays.features), np.array(arrays.group_mask)
    x[:, start:stop] = 0.0
    mask[:, g] = False
    flagged = [f.name for f in layout.flagged_groups]
    if group in flagged:
        x[:, layout.num_features - len(flagged) + flagged.index(group)] = 0.0
    return arrays._replace(features=jnp.asarray(x), group_mask=jnp.asarray(mask))


def accuracy_on(predict, arrays, rows=None) -> float:
    """Accuracy of `predict(arrays) -> probs` on `rows` (default all)."""
    probs, labels = np.asarray(predict(arrays)), np.asarray(arrays.label)
    rows = np.arange(len(labels)) if rows is None else rows
    return float(np.mean(probs[rows].argmax(1) == labels[rows]))


def separable_datamodule(n_train=4096, n_val=1024, seed=0, layout=DEFAULT_LAYOUT):
    return ArrayDataModule(separable_arrays(n_train, seed, layout), separable_arrays(n_val, seed + 1, layout),
                           separable_arrays(n_val, seed + 2, layout))


from pidx.training import Callback  # noqa: E402


class CountingCallback(Callback):
    """A user callback loaded by import path from recipes in tests."""

    instances = []

    def __init__(self, tag: str = "x"):
        self.tag, self.epochs = tag, 0
        CountingCallback.instances.append(self)

    def on_train_epoch_end(self, trainer):
        self.epochs += 1


class CrashAt(Callback):
    """Raises, as a lost node would, once training has passed `step`."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, outputs, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError("node lost")


class SlowEpochs(Callback):
    """Makes each epoch last at least `seconds`, as real ones do, so that a signal sent once an epoch is
    logged reliably lands while the fit still runs (the small test fits' epochs take milliseconds)."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds

    def on_train_epoch_end(self, trainer):
        time.sleep(self.seconds)


def assert_beats_quick_baselines(metrics: dict, *, accuracy_margin: float = 0.05, nll_margin: float = 0.15):
    """A fit's model must beat, on its own test tracks, the majority class and the n-sigma method (where
    it was measured) by `accuracy_margin` in accuracy, and the species abundances alone (the NLL of the
    train split's priors) by `nll_margin`: margins a broken model (uniform, constant, blind to the
    detectors) cannot reach, unlike a fixed floor such as accuracy > 0.5."""
    test = metrics["test"]
    train = np.array(list(metrics["data"]["train"]["class_counts"].values()), float)
    counts = np.array(list(metrics["data"]["test"]["class_counts"].values()), float)
    prior_nll = float(-(counts * np.log(np.maximum(train / train.sum(), 1e-12))).sum() / counts.sum())
    best = max(metrics["majority_baseline"], metrics.get("baselines", {}).get("nsigma", {}).get("accuracy", 0.0))
    assert test["accuracy"] > best + accuracy_margin, (test["accuracy"], best)
    assert test["nll"] < prior_nll - nll_margin, (test["nll"], prior_nll)

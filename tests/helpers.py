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

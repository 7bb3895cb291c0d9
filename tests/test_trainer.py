import json
import os
import signal
from pathlib import Path

import jax
import numpy as np
import pytest

from helpers import accuracy_on, detector_arrays, detector_datamodule, masked, separable_datamodule
import pidx
import pidx.training.trainer as trainer_module
from pidx.data.schema import DEFAULT_LAYOUT, DetectorGroup, make_layout
from pidx.errors import CheckpointError, TrainingError
from pidx.models import FSEAttention, build_model
from pidx.models.embeddings import GroupEmbedding, dense_group_embedding, has_stacked_embeddings, per_group_form
from pidx.training import (
    HOOKS, Callback, CSVLogger, CrossEntropy, EarlyStopping, ModelCheckpoint, TerminateOnNaN, Trainer,
)

import equinox as eqx


def leaves(trainer):
    return [np.asarray(a) for a in jax.tree.leaves((trainer.params, trainer.model_state))]


def trainer(**kw):
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("loss", CrossEntropy())
    kw.setdefault("batch_size", 256)
    return Trainer(**kw)


@pytest.fixture(scope="module")
def dm():
    return separable_datamodule()


@pytest.fixture(scope="module")
def detectors():
    """Species readable only from TPC (which pair) and TOF (which of the two; present on half the tracks)."""
    return detector_datamodule()


def check_uses_detectors(t, dm, layout=DEFAULT_LAYOUT, pair="tpc", within="tof"):
    """The fitted model reads what carries the species and nothing it should not (helpers.detector_arrays):
    near-perfect where both groups are there, the prior-limited 0.5 without `within`, and no better when
    an absent group's values carry the answer."""
    test = dm.test
    present = np.flatnonzero(np.asarray(test.group_mask)[:, layout.group_names.index(within)])
    absent = np.setdiff1d(np.arange(test.num_tracks), present)
    assert accuracy_on(t.predict, test, present) > 0.95  # a group-blind model: 0.5 here, one ignoring detectors: 0.25
    assert accuracy_on(t.predict, test, absent) < 0.6
    assert accuracy_on(t.predict, masked(test, layout, within), present) < 0.6  # masking the group loses it
    assert accuracy_on(t.predict, masked(test, layout, pair), present) < 0.6
    if t.model.__class__.__name__ not in ("SimpleNN", "DNN"):  # FSE reads raw groups and the mask: masked values are inert
        leaky = detector_arrays(test.num_tracks, 2, layout, pair=pair, within=within, leak=True)
        rows = np.flatnonzero(~np.asarray(leaky.group_mask)[:, layout.group_names.index(within)])
        assert accuracy_on(t.predict, leaky, rows) < 0.6


@pytest.mark.parametrize("name", ["simplenn", "dnn", "fse_phase0", "fse_phase1"])
def test_each_model_learns_from_the_detectors(name, detectors):
    model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), dropout=0.1)
    t = trainer(max_epochs=6, batch_size=128)
    t.fit(model, detectors, state=state)
    check_uses_detectors(t, detectors)
    assert t.history[-1]["train/loss"] < t.history[0]["train/loss"]


@pytest.mark.parametrize("name", ["simplenn", "dnn", "fse_phase0", "fse_phase1"])
def test_each_model_learns_in_bf16_with_f32_weights_and_state(name, dm):
    """bf16 compute, f32 master weights; DNN's BatchNorm statistics stay f32 (they once broke bf16)."""
    model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), dropout=0.1)
    t = trainer(max_epochs=6, batch_size=128, precision="bf16")
    t.fit(model, dm, state=state)
    assert t.test()["accuracy"] > 0.99
    leaves = [x for x in jax.tree.leaves((t.params, t.model_state)) if hasattr(x, "dtype") and x.dtype.kind == "f"]
    assert leaves and all(x.dtype == jax.numpy.float32 for x in leaves)
    # what ran, not what the flag says: the train program's matrix products are bf16 (f32 in an f32 fit)
    assert dot_dtypes(t) == {"bf16"}
    model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), dropout=0.1)
    f32 = trainer(max_epochs=1, batch_size=128)
    f32.fit(model, dm, state=state)
    assert dot_dtypes(f32) == {"f32"}


def dot_dtypes(t) -> set[str]:
    """The element types of the results of every matrix product in the Trainer's lowered train programs."""
    import re

    text = "\n".join(p.as_text() for p in t.train_programs.values())
    found = {m.group(1) for m in re.finditer(r"stablehlo\.dot_general[^\n]*-> tensor<[0-9x]*x(\w+)>", text)}
    assert found, "no matrix product found in the train program"
    return found


class Recorder(Callback):
    def __init__(self, log):
        self.log = log

    def __getattribute__(self, name):
        if name in HOOKS:
            log = object.__getattribute__(self, "log")
            return lambda trainer, *a: log.append(name)
        return object.__getattribute__(self, name)


class RecorderWithBatches(Recorder):
    def on_train_batch_end(self, trainer, outputs, batch_idx):  # makes the trainer chunk the epoch
        self.log.append("on_train_batch_end")


def test_hook_order(dm, tmp_path):
    log = []
    model, state = small()
    t = trainer(max_epochs=2, callbacks=[RecorderWithBatches(log)], log_every_n_steps=8,
                default_root_dir=tmp_path)
    t.fit(model, dm, state=state)
    epoch = (["on_train_epoch_start"] + ["on_train_batch_end"] * 2
             + ["on_validation_start", "on_validation_end", "on_train_epoch_end"])
    assert log == ["setup", "on_fit_start"] + epoch * 2 + ["on_train_end", "on_fit_end", "teardown"]
    log.clear()
    t.test()
    assert log == ["setup", "on_test_start", "on_test_end", "teardown"]


def test_early_stopping_and_checkpoint_run_last(dm, tmp_path):
    order = []

    class Spy(Callback):
        def on_validation_end(self, trainer):
            order.append("spy")

    class SpyStop(EarlyStopping):
        def on_validation_end(self, trainer):
            order.append("early_stopping")

    model, state = small()
    t = trainer(max_epochs=1, callbacks=[SpyStop(), Spy()], default_root_dir=tmp_path)
    t.fit(model, dm, state=state)
    assert order == ["spy", "early_stopping"]


class Scripted(Callback):
    """Replaces val/accuracy with a scripted sequence (runs before the runs_last callbacks)."""

    def __init__(self, values):
        self.values = values

    def on_validation_end(self, trainer):
        trainer.logged_metrics["val/accuracy"] = self.values[trainer.current_epoch]


def test_early_stopping_stops_at_right_epoch_and_restores_best(dm, tmp_path):
    values = [0.5, 0.7, 0.69, 0.7, 0.6, 0.9, 0.95]
    snapshots = []

    class Snap(Callback):
        def on_train_epoch_end(self, trainer):
            snapshots.append(leaves(trainer))

    model, state = small()
    es = EarlyStopping(monitor="val/accuracy", mode="max", patience=3, min_delta=0.0)
    t = trainer(max_epochs=7, callbacks=[Scripted(values), Snap(), es], default_root_dir=tmp_path)
    t.fit(model, dm, state=state)
    assert t.current_epoch == 5 and es.stopped_epoch == 4 and es.best_epoch == 1
    assert "did not improve for 3 epochs" in t.stop_reason
    for a, b in zip(leaves(t), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_keeps_exactly_top_k(dm, tmp_path):
    values = [0.3, 0.8, 0.5, 0.9, 0.1, 0.85]
    model, state = small()
    mc = ModelCheckpoint(monitor="val/accuracy", mode="max", save_top_k=2, filename="epoch={epoch}-acc={val/accuracy:.2f}")
    t = trainer(max_epochs=6, callbacks=[Scripted(values), mc], default_root_dir=tmp_path)
    t.fit(model, dm, state=state)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith("."))
    assert len(list((tmp_path / "checkpoints").iterdir())) == 6  # 3 links + their 3 directories, no leftovers
    assert saved == ["epoch=3-acc=0.90", "epoch=5-acc=0.85", "last"]
    assert mc.best_model_score == 0.9 and mc.best_model_path.endswith("epoch=3-acc=0.90")


def test_unknown_monitor_fails_before_the_first_step_listing_the_logged_ones(dm, tmp_path):
    model, state = small()
    for cb in (EarlyStopping(monitor="val/acc"), ModelCheckpoint(monitor="val/acc")):
        t = trainer(max_epochs=1, callbacks=[cb], default_root_dir=tmp_path)
        with pytest.raises(TrainingError, match=r"'val/acc' is not logged.*'val/accuracy'.*'val/macro_auc'"):
            t.fit(model, dm, state=state)
        assert t.global_step == 0

    class Logs(pidx.Callback):  # a callback's own metric, declared, can be monitored
        metrics = ("custom/score",)

        def on_validation_end(self, trainer):
            trainer.logged_metrics["custom/score"] = float(trainer.current_epoch)

    t = trainer(max_epochs=2, callbacks=[Logs(), EarlyStopping(monitor="custom/score", mode="max")],
                default_root_dir=tmp_path / "own")
    t.fit(model, dm, state=state)
    assert [row["custom/score"] for row in t.history] == [0.0, 1.0]


SMALL = {"simplenn": {"hidden": (32, 16)}, "dnn": {"hidden": (32, 16)},
         "fse_phase1": {"hidden_dim": 16, "group_dropout": 0.1}}


def small(name="simplenn"):
    return build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), **SMALL[name])


def fse_trainer(tmp_path, max_epochs):
    return trainer(max_epochs=max_epochs, callbacks=[ModelCheckpoint(save_top_k=1), EarlyStopping(patience=50),
                                                     CSVLogger()], default_root_dir=tmp_path)


def fit_fse(dm, tmp_path, max_epochs, ckpt_path=None, name="fse_phase1"):
    model, state = small(name)
    t = fse_trainer(tmp_path, max_epochs)
    t.fit(model, dm, state=state, ckpt_path=ckpt_path)
    return t


def test_same_seed_same_weights(dm, tmp_path):
    a = fit_fse(dm, tmp_path / "a", 2)
    b = fit_fse(dm, tmp_path / "b", 2)
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["dnn", "fse_phase1"])
def test_resume_is_exact(dm, tmp_path, name):
    straight = fit_fse(dm, tmp_path / "straight", 4, name=name)
    fit_fse(dm, tmp_path / "resumed", 2, name=name)
    resumed = fit_fse(dm, tmp_path / "resumed", 4, ckpt_path=tmp_path / "resumed" / "checkpoints" / "last",
                      name=name)
    assert resumed.global_step == straight.global_step and len(resumed.history) == 4
    # the one train state carries the step count and the seed's key, resumed like the weights
    assert int(resumed.state.step) == int(straight.state.step) == straight.global_step
    np.testing.assert_array_equal(resumed.state.key, jax.random.PRNGKey(straight.seed))
    for x, y in zip(leaves(straight), leaves(resumed)):
        np.testing.assert_array_equal(x, y)
    assert (tmp_path / "resumed" / "history.csv").read_text().count("\n") == 5


def test_checkpoint_with_per_group_embeddings_resumes_converted(dm, tmp_path):
    """A checkpoint written when each FSE group embedding was its own module (before they were stacked
    into one batched product) loads converted: the weights, Adam's moments and EarlyStopping's copy of
    the best weights. Resumed, it ends exactly where a straight fit does."""
    import hashlib

    straight = fit_fse(dm, tmp_path / "straight", 4)
    first = fit_fse(dm, tmp_path / "old", 2)
    last = tmp_path / "old" / "checkpoints" / "last"
    meta = json.loads((last / "meta.json").read_text())
    likes = {"model.eqx": first.params, "model_state.eqx": first.model_state, "opt_state.eqx": first.opt_state}
    rewritten = []
    for fname in meta["files"]:
        tree = eqx.tree_deserialise_leaves(last / fname, likes.get(fname, (first.params, first.model_state)))
        if has_stacked_embeddings(tree):
            eqx.tree_serialise_leaves(last / fname, per_group_form(tree))
            meta["files"][fname] = hashlib.sha256((last / fname).read_bytes()).hexdigest()
            rewritten.append(fname)
    (last / "meta.json").write_text(json.dumps(meta))
    assert {"model.eqx", "opt_state.eqx"} <= set(rewritten) and any(f.startswith("extra-") for f in rewritten)
    with pytest.raises(Exception):  # the old form really differs from today's
        eqx.tree_deserialise_leaves(last / "model.eqx", first.params)
    resumed = fit_fse(dm, tmp_path / "old", 4, ckpt_path=last)
    for x, y in zip(leaves(straight), leaves(resumed)):
        np.testing.assert_array_equal(x, y)


def test_signal_after_the_loops_last_look_still_stops_with_a_checkpoint(dm, tmp_path, monkeypatch):
    """A SIGTERM that lands after the loop last looked for one (the race a batch system can win at the
    end of a short fit) still stops the fit as promised, saves, and resuming ends where a straight fit does."""
    straight = fit_fse(dm, tmp_path / "straight", 2)
    real, fired = trainer_module.any_process, []

    def signalled_while_looking(flag):
        answer = real(flag)  # the flag is read, then the signal arrives
        if stopping.current_epoch == 2 and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return answer

    monkeypatch.setattr(trainer_module, "any_process", signalled_while_looking)
    model, state = small("fse_phase1")
    stopping = fse_trainer(tmp_path / "run", 2)
    with pytest.raises(KeyboardInterrupt, match="after the last epoch") as stopped:
        stopping.fit(model, dm, state=state)
    assert fired and stopped.value.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back
    resumed = fit_fse(dm, tmp_path / "run", 2, ckpt_path=tmp_path / "run" / "checkpoints" / "interrupted")
    assert len(resumed.history) == 2
    for x, y in zip(leaves(straight), leaves(resumed)):
        np.testing.assert_array_equal(x, y)


def test_terminate_on_nan_keeps_last_good_checkpoint(dm, tmp_path):
    class Poison(Callback):
        def on_train_epoch_start(self, trainer):
            if trainer.current_epoch == 2:
                trainer.learning_rate = float("nan")

    model, state = small()
    t = trainer(max_epochs=5, callbacks=[Poison(), TerminateOnNaN(), ModelCheckpoint()], default_root_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, step 3\d"):
        t.fit(model, dm, state=state)
    from pidx.training import read_meta
    assert read_meta(tmp_path / "checkpoints" / "last")["epochs_completed"] == 2


def test_corrupted_checkpoint_errors_name_the_file(dm, tmp_path):
    t = fit_fse(dm, tmp_path, 1, name="simplenn")
    last = tmp_path / "checkpoints" / "last"
    weights = last / "model.eqx"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model.eqx: corrupted or truncated"):
        fit_fse(dm, tmp_path / "x", 2, ckpt_path=last, name="simplenn")
    (last / "meta.json").write_text('{"format_version": 99}')
    with pytest.raises(CheckpointError, match="format version 99"):
        fit_fse(dm, tmp_path / "x", 2, ckpt_path=last, name="simplenn")
    with pytest.raises(CheckpointError, match="not found"):
        fit_fse(dm, tmp_path / "x", 2, ckpt_path=tmp_path / "nope", name="simplenn")
    assert t is not None


def test_callback_can_replace_model(dm, tmp_path):
    class Zero(Callback):
        def on_train_epoch_end(self, trainer):
            trainer.model = jax.tree.map(lambda a: a * 0 if eqx.is_inexact_array(a) else a, trainer.model)

    model, state = small()
    t = trainer(max_epochs=1, callbacks=[Zero()], default_root_dir=tmp_path)
    t.fit(model, dm, state=state)
    assert all(np.all(a == 0) for a in jax.tree.leaves(t.params))


def tpc_as_sequence(group, in_size, hidden_dim, activation, *, key):
    """A group-embedding factory: the TPC group through a 2-layer MLP instead of one Dense."""
    if group.name == "tpc":
        return eqx.nn.MLP(in_size, hidden_dim, width_size=16, depth=2, key=key)
    return dense_group_embedding(group, in_size, hidden_dim, activation, key=key)


def test_custom_group_embedding_trains(detectors, tmp_path):
    model = FSEAttention(DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), dropout=0.1, group_embedding=tpc_as_sequence)
    assert isinstance(model.encoder.embeddings[0], eqx.nn.MLP)
    assert isinstance(model.encoder.embeddings[1], GroupEmbedding)
    t = trainer(max_epochs=6, batch_size=128, default_root_dir=tmp_path)
    t.fit(model, detectors)
    check_uses_detectors(t, detectors)  # the custom TPC embedding carries the pair


def test_fifth_detector_group_trains_through_unchanged_trainer(tmp_path):
    """A new group that alone tells pions from kaons (and protons from electrons): every model must read it."""
    trd = DetectorGroup("trd", ("trd_signal", "trd_nsigma_el", "trd_nsigma_pi"), flag="has_trd")
    layout = make_layout([trd])
    dm5 = detector_datamodule(layout=layout, within="trd")
    for name in ("fse_phase0", "fse_phase1", "simplenn"):
        model, state = build_model(name, layout, key=jax.random.PRNGKey(0), dropout=0.1)
        t = trainer(max_epochs=6, batch_size=128, default_root_dir=tmp_path)
        t.fit(model, dm5, state=state)
        check_uses_detectors(t, dm5, layout, within="trd")


def test_fit_leaves_the_callers_model_usable(dm, tmp_path):
    model, state = small()
    trainer(max_epochs=1, default_root_dir=tmp_path).fit(model, dm, state=state)
    t2 = trainer(max_epochs=1, default_root_dir=tmp_path / "again")
    t2.fit(model, dm, state=state)  # the same objects again: their buffers were not donated away
    assert np.isfinite(t2.logged_metrics["train/loss"])


def test_early_stopping_and_checkpoint_keep_the_best_epoch(dm, tmp_path):
    """The monitored minimum is what EarlyStopping restores and what ModelCheckpoint keeps."""
    model, state = small("simplenn")
    early, ckpt = EarlyStopping(patience=3), ModelCheckpoint(save_top_k=1)
    t = trainer(max_epochs=5, callbacks=[early, ckpt], default_root_dir=tmp_path, learning_rate=3e-2)
    t.fit(model, dm, state=state)
    nll = [h["val/nll"] for h in t.history]
    best = int(np.argmin(nll))
    assert early.best_epoch == best and early.best == pytest.approx(min(nll)) and t.restored_epoch == best
    (kept,) = [Path(p).name for _, p in ckpt.best_k]
    assert kept.startswith(f"epoch={best}-")


def test_two_checkpoint_callbacks_resume_each_its_own_state(dm, tmp_path):
    """Two ModelCheckpoint and two EarlyStopping callbacks on different monitors: each state is keyed by
    its monitor and mode, so a resumed fit gives each its own (they once shared the class name's key)."""
    def callbacks(root):
        return [ModelCheckpoint(dirpath=root / "by_nll", monitor="val/nll", mode="min", save_top_k=2),
                ModelCheckpoint(dirpath=root / "by_acc", monitor="val/accuracy", mode="max", save_top_k=2,
                                filename="epoch={epoch}-acc={val/accuracy:.4f}"),
                EarlyStopping(monitor="val/nll", patience=50), EarlyStopping(monitor="val/accuracy", mode="max",
                                                                             patience=50)]

    model, state = small("simplenn")
    first = callbacks(tmp_path)
    trainer(max_epochs=2, callbacks=first, default_root_dir=tmp_path).fit(model, dm, state=state)
    again = callbacks(tmp_path)
    model, state = small("simplenn")
    trainer(max_epochs=2, callbacks=again, default_root_dir=tmp_path).fit(
        model, dm, state=state, ckpt_path=tmp_path / "by_nll" / "last")
    meta = pidx.training.read_meta(tmp_path / "by_nll" / "last")
    assert {cb.state_key for cb in again} <= set(meta["callbacks"]) and len({cb.state_key for cb in again}) == 4
    for before, after in zip(first, again):
        assert after.state_key == before.state_key
        saved = {k: v for k, v in meta["callbacks"][after.state_key].items() if k != "__weights__"}
        restored = {k: v for k, v in after.state_dict().items() if k != "weights"}
        assert json.loads(json.dumps(restored)) == saved  # each callback got its own entry back
    assert {Path(p).parent for _, p in again[0].best_k} == {tmp_path / "by_nll"}
    assert {Path(p).parent for _, p in again[1].best_k} == {tmp_path / "by_acc"}
    assert again[2].best != again[3].best  # an NLL and an accuracy, each restored to its own callback
    with pytest.raises(TrainingError, match="share the checkpoint state key"):
        model, state = small("simplenn")
        trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "a"), ModelCheckpoint(dirpath=tmp_path / "b")],
                default_root_dir=tmp_path / "c").fit(model, dm, state=state)


def test_checkpoints_keyed_by_class_name_still_resume(dm, tmp_path):
    """A checkpoint written when callback states were keyed by their class name alone (and EarlyStopping's
    best weights stored as extra-EarlyStopping.eqx) gives its state back to the one callback of that class."""
    straight = fit_fse(dm, tmp_path / "straight", 3, name="simplenn")
    fit_fse(dm, tmp_path / "old", 2, name="simplenn")
    last = tmp_path / "old" / "checkpoints" / "last"
    last = last.parent / os.readlink(last) if last.is_symlink() else last
    meta = json.loads((last / "meta.json").read_text())
    for cls in ("ModelCheckpoint", "EarlyStopping"):
        key = next(k for k in meta["callbacks"] if k.startswith(cls + "{"))
        meta["callbacks"][cls] = meta["callbacks"].pop(key)
    new_name = next(f for f in meta["files"] if f.startswith("extra-EarlyStopping"))
    (last / new_name).rename(last / "extra-EarlyStopping.eqx")
    meta["files"]["extra-EarlyStopping.eqx"] = meta["files"].pop(new_name)
    (last / "meta.json").write_text(json.dumps(meta))
    resumed = fit_fse(dm, tmp_path / "old", 3, ckpt_path=tmp_path / "old" / "checkpoints" / "last", name="simplenn")
    early = next(cb for cb in resumed.callbacks if isinstance(cb, EarlyStopping))
    assert early.best_epoch >= 0 and early.best_weights is not None
    for x, y in zip(leaves(straight), leaves(resumed)):
        np.testing.assert_array_equal(x, y)


def test_the_trainer_schedules_the_learning_rate_over_its_own_steps():
    """`lr_schedule` is built at fit from the epoch's step count: cosine ends at 0 after max_epochs and
    warm-up rises linearly; the logged rate is the one the last step of each epoch used."""
    import optax

    from helpers import separable_datamodule
    from pidx.models import build_model

    dm = separable_datamodule(1000, 256)  # 1000 // 100 = 10 steps per epoch
    lrs = {}
    for schedule in ("cosine", "warmup_cosine"):
        model, state = build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(8,))
        t = Trainer(max_epochs=4, batch_size=100, learning_rate=0.01, lr_schedule=schedule, warmup_epochs=2,
                    enable_progress_bar=False)
        t.fit(model, dm, state=state)
        lrs[schedule] = [h["lr"] for h in t.history]
    expected = optax.cosine_decay_schedule(0.01, 40)
    np.testing.assert_allclose(lrs["cosine"], [float(expected(s)) for s in (9, 19, 29, 39)], rtol=1e-5, atol=1e-9)
    warm = optax.warmup_cosine_decay_schedule(0.0, 0.01, 20, 40)
    np.testing.assert_allclose(lrs["warmup_cosine"], [float(warm(s)) for s in (9, 19, 29, 39)], rtol=1e-5, atol=1e-9)
    with pytest.raises(TrainingError, match="lr_schedule must be one of"):
        Trainer(lr_schedule="linear")

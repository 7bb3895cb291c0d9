"""Long runs: max_time, checkpoints inside epochs, the in-epoch progress bar, TensorBoard."""

import struct
import time

import jax
import numpy as np
import pytest

from helpers import CrashAt, separable_datamodule
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.errors import RecipeError, TrainingError
from pidx.models import build_model
from pidx.recipe import validate_recipe
from pidx.runs.build import make_trainer
from pidx.training import (
    Callback, CrossEntropy, CSVLogger, EarlyStopping, ModelCheckpoint, ProgressBar, TensorBoardLogger, Trainer,
    read_meta,
)
from pidx.utils import parse_duration

STEPS = 16  # steps per epoch: 4096 tracks / 256


@pytest.fixture(scope="module")
def dm():
    return separable_datamodule()


def fit(dm, root, *, max_epochs=3, callbacks=(), ckpt_path=None, **kw):
    model, state = build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(32, 16))
    t = Trainer(max_epochs=max_epochs, batch_size=256, loss=CrossEntropy(), enable_progress_bar=False,
                default_root_dir=root, log_every_n_steps=2, callbacks=[EarlyStopping(patience=50), *callbacks], **kw)
    t.fit(model, dm, state=state, ckpt_path=ckpt_path)
    return t


def weights(t):
    return [np.asarray(a) for a in jax.tree.leaves((t.params, t.opt_state, t.model_state))]


class Slow(Callback):
    """Makes time pass between chunks of steps (0.25 s each), so a max_time of 1 s falls inside epoch 0."""

    def on_train_batch_end(self, trainer, outputs, batch_idx):
        time.sleep(0.25)


@pytest.fixture(scope="module")
def straight(dm, tmp_path_factory):
    return weights(fit(dm, tmp_path_factory.mktemp("straight"), callbacks=[ModelCheckpoint()]))


def test_max_time_stops_inside_an_epoch_and_resumes_exactly(dm, tmp_path, straight):
    t = fit(dm, tmp_path / "run", max_time=1.0, callbacks=[Slow(), ModelCheckpoint()])
    assert t.time_limit_reached and t.stop_reason.startswith("max_time=1 s reached at epoch 0, step ")
    assert 0 < t.epoch_step < STEPS and t.current_epoch == 0 and t.history == []  # no part-epoch row
    meta = read_meta(tmp_path / "run" / "checkpoints" / "interrupted")
    assert meta["epoch_step"] == t.epoch_step and meta["global_step"] == t.global_step
    resumed = fit(dm, tmp_path / "run", callbacks=[ModelCheckpoint()],
                  ckpt_path=tmp_path / "run" / "checkpoints" / "interrupted")
    assert resumed.stop_reason == "reached max_epochs=3" and len(resumed.history) == 3
    for a, b in zip(straight, weights(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("every", [{"every_n_train_steps": 5}, {"train_time_interval": 1e-6}])
def test_checkpoints_inside_epochs_resume_exactly(dm, tmp_path, straight, every):
    with pytest.raises(RuntimeError, match="node lost"):
        fit(dm, tmp_path, callbacks=[CrashAt(STEPS + 10), ModelCheckpoint(**every)])
    meta = read_meta(tmp_path / "checkpoints" / "last")
    # the crash comes at step 26, before ModelCheckpoint's turn; steps come in chunks of 2: the last
    # multiple of 5 passed is at step 20, and a tiny time interval saves after every chunk, last at 24
    expected = STEPS + 4 if "every_n_train_steps" in every else STEPS + 8
    assert meta["global_step"] == expected and meta["epoch_step"] == expected - STEPS
    resumed = fit(dm, tmp_path, callbacks=[ModelCheckpoint(**every)], ckpt_path=tmp_path / "checkpoints" / "last")
    for a, b in zip(straight, weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_interval_arguments_are_checked():
    with pytest.raises(TrainingError, match="every_n_train_steps must be >= 1, got 0"):
        ModelCheckpoint(every_n_train_steps=0)
    with pytest.raises(TrainingError, match="they need save_last=True"):
        ModelCheckpoint(every_n_train_steps=10, save_last=False)
    with pytest.raises(TrainingError, match="train_time_interval 'soon' is not seconds or DD:HH:MM:SS"):
        ModelCheckpoint(train_time_interval="soon")


def test_durations():
    assert parse_duration("01:02:03:04") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_duration("00:30:00") == 1800 and parse_duration(90) == 90.0 and parse_duration(None) is None
    with pytest.raises(ValueError, match="max_time must be positive"):
        parse_duration("0:00", what="max_time")
    with pytest.raises(TrainingError, match="max_time 'x' is not seconds"):
        Trainer(max_time="x")


def test_recipe_max_time():
    recipe = validate_recipe({"trainer": {"max_time": "00:01:00"}})
    assert make_trainer(recipe, "/nonexistent", quiet=True).max_time == 60
    with pytest.raises(RecipeError, match="trainer: max_time '1h' is not seconds or DD:HH:MM:SS"):
        make_trainer(validate_recipe({"trainer": {"max_time": "1h"}}), "/nonexistent", quiet=True)


def test_progress_bar_inside_the_epoch_on_a_terminal(dm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    bar = ProgressBar(refresh_per_second=100)
    seen = []

    class Watch(Callback):
        def on_train_batch_end(self, trainer, outputs, batch_idx):
            seen.append(bar._progress.tasks[1].completed)

    fit(dm, tmp_path, max_epochs=1, callbacks=[bar, Watch()])
    assert seen == list(range(2, STEPS + 1, 2))  # the step bar moves every log_every_n_steps steps
    err = capsys.readouterr().err
    assert "tracks/s" in err and "ETA" in err and "step" in err


def test_progress_bar_off_a_terminal_keeps_the_epoch_one_scan(dm, tmp_path, monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    bar = ProgressBar()
    t = fit(dm, tmp_path, max_epochs=1, callbacks=[bar])
    assert not bar.wants_train_batch_end
    assert t.summary["scan_lengths"] == [t.summary["steps_per_epoch"]]  # what the Trainer ran: one scan an epoch
    on_terminal = fit(dm, tmp_path / "tty", max_epochs=1, callbacks=[RecorderOfBatches()])
    assert max(on_terminal.summary["scan_lengths"]) == 2  # a callback that wants batches: chunks of log_every_n_steps


class RecorderOfBatches(Callback):
    def on_train_batch_end(self, trainer, outputs, batch_idx):
        pass


def _events(directory):
    """(tag, step, value) of every scalar in the TensorBoard event files under `directory`."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_tensorboard_logger(dm, tmp_path):
    t = fit(dm, tmp_path, max_epochs=2, callbacks=[TensorBoardLogger()])
    events = _events(tmp_path / "tensorboard")
    steps = [(s, v) for tag, s, v in events if tag == "train/step_loss"]
    assert [s for s, _ in steps] == list(range(1, 2 * STEPS + 1))
    np.testing.assert_allclose([v for s, v in steps[-STEPS:]], t.epoch_step_losses, rtol=1e-6)
    nll = [(s, v) for tag, s, v in events if tag == "val/nll"]
    assert nll == [(STEPS, pytest.approx(t.history[0]["val/nll"], rel=1e-6)),
                   (2 * STEPS, pytest.approx(t.history[1]["val/nll"], rel=1e-6))]
    assert {"val/macro_auc", "val/accuracy", "lr", "train/loss"} <= {tag for tag, _, _ in events}


class CountValidations(Callback):
    def __init__(self):
        self.inside, self.at_epoch_end = 0, 0

    def on_validation_end(self, trainer):
        if trainer.validating_inside_epoch:
            self.inside += 1
        else:
            self.at_epoch_end += 1


def test_val_check_interval_validates_inside_epochs_without_changing_training(dm, tmp_path, straight):
    counter = CountValidations()
    t = fit(dm, tmp_path / "run", val_check_interval=5, callbacks=[counter, ModelCheckpoint(), CSVLogger()])
    # 16 steps per epoch: checks after steps 5, 10 and 15 of each epoch, the epoch end validates as before
    assert [r["epoch_step"] for r in t.step_validations] == [5, 10, 15] * 3
    assert (counter.inside, counter.at_epoch_end) == (9, 3) and len(t.history) == 3
    assert all(r["val/nll"] > 0 and "val/macro_auc" in r for r in t.step_validations)
    assert len((tmp_path / "run" / "val_checks.csv").read_text().splitlines()) == 1 + 9
    for a, b in zip(straight, weights(t)):  # validation reads the weights, never changes them
        np.testing.assert_array_equal(a, b)
    # a crash after a step checkpoint, resumed: the same checks, the same values
    with pytest.raises(RuntimeError, match="node lost"):
        fit(dm, tmp_path / "crash", val_check_interval=5,
            callbacks=[CrashAt(STEPS + 12), ModelCheckpoint(every_n_train_steps=5)])
    resumed = fit(dm, tmp_path / "crash", val_check_interval=5, callbacks=[ModelCheckpoint()],
                  ckpt_path=tmp_path / "crash" / "checkpoints" / "last")
    assert [r["val/nll"] for r in resumed.step_validations] == [r["val/nll"] for r in t.step_validations]
    with pytest.raises(TrainingError, match="val_check_interval"):
        Trainer(val_check_interval=0)

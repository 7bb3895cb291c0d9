"""Callbacks: the `Callback` base and the built-in ones (ModelCheckpoint in `model_checkpoint.py`).

Hook order (each hook: ordinary callbacks in list order, then the model's own method
of the same name if it has one, then the `runs_last` callbacks — EarlyStopping, then
ModelCheckpoint):

```
setup(stage="fit") → on_fit_start
  per epoch: on_train_epoch_start
             → on_train_batch_end (per chunk of steps, only if some callback defines it)
             → on_validation_start → [validation] → on_validation_end
             → [history row appended] → on_train_epoch_end
→ on_train_end (the loop is over: max_epochs, a stop or max_time) → on_fit_end → teardown(stage="fit")
on_save_checkpoint / on_load_checkpoint when a checkpoint is written / read
on_exception if anything raises inside fit (then teardown still runs)
test: setup("test") → on_test_start → on_test_end → teardown("test"); predict likewise
```

A callback can stop training (`trainer.should_stop = True`, with `trainer.stop_reason`),
read `trainer.logged_metrics`, `trainer.model`, and replace the model
(`trainer.model = new_model`). Its `state_dict()` / `load_state_dict()` travel in
checkpoints (JSON values; a `"weights"` entry holding `(params, model_state)` is saved
as an Equinox leaf file).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TrainingError
from .metrics import balanced_accuracy, macro_auc

HOOKS = (
    "setup", "on_fit_start", "on_train_epoch_start", "on_train_batch_end", "on_validation_start",
    "on_validation_end", "on_train_epoch_end", "on_train_end", "on_fit_end", "on_exception", "on_save_checkpoint",
    "on_load_checkpoint", "teardown", "on_test_start", "on_test_end", "on_predict_start", "on_predict_end",
)


class Callback:
    """Base class: every hook is a no-op; override the ones you need.

    Set `runs_last = True` for callbacks that must see every other callback's effect
    (EarlyStopping and ModelCheckpoint do). A callback that writes its own entries into
    `trainer.logged_metrics` names them in `metrics` (a class or instance attribute), so a
    monitor of one of them is known before the first step.
    """

    runs_last: bool = False
    metrics: tuple[str, ...] = ()

    @property
    def wants_train_batch_end(self) -> bool:
        """Whether the Trainer calls `on_train_batch_end`, which splits each epoch's on-device scan into
        chunks of `log_every_n_steps` (read after `on_fit_start`); default: whether the class defines it."""
        return type(self).on_train_batch_end is not Callback.on_train_batch_end

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint: the class name, unless the callback
        sets `_state_key` (two callbacks of one class must have different keys)."""
        return getattr(self, "_state_key", None) or type(self).__qualname__

    def setup(self, trainer, stage: str): ...
    def on_fit_start(self, trainer): ...
    def on_train_epoch_start(self, trainer): ...
    def on_train_batch_end(self, trainer, outputs: dict, batch_idx: int):
        """Called per chunk of `log_every_n_steps` steps with chunk-aggregated `outputs`
        (`loss`, `accuracy`, `steps`); `batch_idx` is the last step of the chunk in the epoch."""
    def on_validation_start(self, trainer): ...
    def on_validation_end(self, trainer): ...
    def on_train_epoch_end(self, trainer): ...
    def on_train_end(self, trainer): ...
    def on_fit_end(self, trainer): ...
    def on_exception(self, trainer, exception: BaseException): ...
    def on_save_checkpoint(self, trainer, checkpoint: dict): ...
    def on_load_checkpoint(self, trainer, checkpoint: dict): ...
    def teardown(self, trainer, stage: str): ...
    def on_test_start(self, trainer): ...
    def on_test_end(self, trainer): ...
    def on_predict_start(self, trainer): ...
    def on_predict_end(self, trainer): ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def monitored_state_key(callback: Callback, monitor: str, mode: str) -> str:
    """`Class{monitor=…,mode=…}`: stable across runs, different for callbacks of one class that watch
    different metrics (Lightning's habit since its #7187)."""
    return f"{type(callback).__qualname__}{{monitor={monitor},mode={mode}}}"


def wants_batch_hooks(cb: Callback) -> bool:
    return cb.wants_train_batch_end


def monitored_value(trainer, monitor: str, who: str) -> float:
    if monitor not in trainer.logged_metrics:
        raise TrainingError(f"{who}: monitored metric '{monitor}' does not exist; logged metrics are "
                            f"{sorted(trainer.logged_metrics)}")
    return float(trainer.logged_metrics[monitor])


def check_monitor_exists(trainer, monitor: str, who: str) -> None:
    """An unknown monitor fails before the first step, not after the first epoch."""
    known = trainer.metric_names()
    if monitor not in known:
        raise TrainingError(f"{who}: monitored metric '{monitor}' is not logged; logged metrics are {sorted(known)} "
                            "(a callback that logs its own names them in its `metrics` attribute)")


def check_mode(mode: str, who: str) -> None:
    if mode not in ("min", "max"):
        raise TrainingError(f"{who}: mode must be 'min' or 'max', got {mode!r}")


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return math.isfinite(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


class ValidationMetrics(Callback):
    """Adds `val/balanced_accuracy` and `val/macro_auc` to the logged metrics each epoch.

    (`val/loss`, `val/accuracy` and `val/nll` come from the Trainer's validation pass.)
    """

    metrics = ("val/balanced_accuracy", "val/macro_auc")

    def on_validation_end(self, trainer):
        probs, labels = trainer.validation_outputs
        trainer.logged_metrics["val/balanced_accuracy"] = balanced_accuracy(labels, probs.argmax(1))
        trainer.logged_metrics["val/macro_auc"] = macro_auc(labels, probs)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs.

    **Arguments:**

    - `monitor`, `mode`: metric name and whether larger (`max`) or smaller is better. The default,
      `val/nll`, is the validation NLL with the class weighting undone: it measures the posteriors
      and does not jump with class weights (docs/evaluation.md).
    - `patience`: epochs without improvement before stopping.
    - `min_delta`: smallest change that counts as an improvement.
    - `restore_best_weights`: at the end of fit, put back the best epoch's weights.
    - `check_finite`: stop at once if the monitored value is NaN or inf.
    - `state_key`: the key of its state in checkpoints (default `EarlyStopping{monitor=…,mode=…}`,
      so two EarlyStopping callbacks on different monitors resume each its own state).
    """

    runs_last = True

    def __init__(self, monitor: str = "val/nll", mode: str = "min", patience: int = 15,
                 min_delta: float = 0.0, restore_best_weights: bool = True, check_finite: bool = True,
                 state_key: str | None = None):
        check_mode(mode, "EarlyStopping")
        self._state_key = state_key or monitored_state_key(self, monitor, mode)
        if patience < 0:
            raise TrainingError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.restore_best_weights, self.check_finite = restore_best_weights, check_finite
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights = None

    def on_fit_start(self, trainer):
        check_monitor_exists(trainer, self.monitor, "EarlyStopping")

    def on_validation_end(self, trainer):
        value = monitored_value(trainer, self.monitor, "EarlyStopping")
        epoch = trainer.current_epoch
        if self.check_finite and not math.isfinite(value):
            self._stop(trainer, epoch, f"{self.monitor} = {value} is not finite at epoch {epoch}")
            return
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:  # a device copy: the live buffers are donated next step
                self.best_weights = jax.tree.map(jnp.copy, (trainer.params, trainer.model_state))
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._stop(trainer, epoch, f"{self.monitor} did not improve for {self.patience} epochs "
                                       f"(best {self.best:.6g} at epoch {self.best_epoch})")

    def _stop(self, trainer, epoch, reason):
        self.stopped_epoch = epoch
        trainer.should_stop = True
        trainer.stop_reason = f"early stopping: {reason}"

    def on_fit_end(self, trainer):
        if self.restore_best_weights and self.best_weights is not None:
            trainer.set_weights(*self.best_weights)
            trainer.restored_epoch = self.best_epoch

    def state_dict(self):
        out = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
               "stopped_epoch": self.stopped_epoch}
        if self.best_weights is not None:
            out["weights"] = self.best_weights
        return out

    def load_state_dict(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best_weights = state.get("weights")


class TerminateOnNaN(Callback):
    """Stop with an error naming epoch and step as soon as the training loss is NaN/inf.

    It checks right after the epoch's steps, before validation and before any
    checkpoint of that epoch is written, so the last good checkpoint stays.
    """

    def on_validation_start(self, trainer):
        losses = trainer.epoch_step_losses
        bad = np.flatnonzero(~np.isfinite(losses))
        if len(bad):
            step = trainer.global_step - len(losses) + int(bad[0])
            raise TrainingError(f"training loss is {losses[bad[0]]} at epoch {trainer.current_epoch}, "
                                f"step {step}; stopped (TerminateOnNaN)")


__all__ = ["HOOKS", "Callback", "monitored_state_key", "wants_batch_hooks", "ValidationMetrics", "EarlyStopping",
           "TerminateOnNaN"]

"""Callbacks: the `Callback` base and the built-in ones.

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
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TrainingError
from ..utils import parse_duration
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
        return type(self).__qualname__

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


def wants_batch_hooks(cb: Callback) -> bool:
    return cb.wants_train_batch_end


def _monitored(trainer, monitor: str, who: str) -> float:
    if monitor not in trainer.logged_metrics:
        raise TrainingError(f"{who}: monitored metric '{monitor}' does not exist; logged metrics are "
                            f"{sorted(trainer.logged_metrics)}")
    return float(trainer.logged_metrics[monitor])


def _check_monitor_exists(trainer, monitor: str, who: str) -> None:
    """An unknown monitor fails before the first step, not after the first epoch."""
    known = trainer.metric_names()
    if monitor not in known:
        raise TrainingError(f"{who}: monitored metric '{monitor}' is not logged; logged metrics are {sorted(known)} "
                            "(a callback that logs its own names them in its `metrics` attribute)")


def _check_mode(mode: str, who: str) -> None:
    if mode not in ("min", "max"):
        raise TrainingError(f"{who}: mode must be 'min' or 'max', got {mode!r}")


def _improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
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
    """

    runs_last = True

    def __init__(self, monitor: str = "val/nll", mode: str = "min", patience: int = 15,
                 min_delta: float = 0.0, restore_best_weights: bool = True, check_finite: bool = True):
        _check_mode(mode, "EarlyStopping")
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
        _check_monitor_exists(trainer, self.monitor, "EarlyStopping")

    def on_validation_end(self, trainer):
        value = _monitored(trainer, self.monitor, "EarlyStopping")
        epoch = trainer.current_epoch
        if self.check_finite and not math.isfinite(value):
            self._stop(trainer, epoch, f"{self.monitor} = {value} is not finite at epoch {epoch}")
            return
        if _improved(value, self.best, self.mode, self.min_delta):
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


class _Formatter(dict):
    def __missing__(self, key):
        raise TrainingError(f"ModelCheckpoint: filename field '{key}' is not a logged metric; "
                            f"available: {sorted(k for k in self)}")


class ModelCheckpoint(Callback):
    """Save checkpoints after each epoch, keeping the `save_top_k` best by `monitor`.

    **Arguments:**

    - `dirpath`: directory (default `<trainer.default_root_dir>/checkpoints`).
    - `monitor`, `mode`: metric ranking the checkpoints (default the validation NLL, as EarlyStopping).
    - `save_top_k`: how many best checkpoints to keep (-1: all, 0: none).
    - `save_last`: also keep `last/`, overwritten every epoch (for `--resume last`).
    - `filename`: template over `epoch`, `step` and logged metrics, e.g.
      `"epoch={epoch}-val_nll={val/nll:.4f}"`.
    - `every_n_epochs`: save only every n-th epoch (the last epoch is always eligible).
    - `every_n_train_steps`, `train_time_interval` (seconds or `"HH:MM:SS"`): also refresh `last/`
      inside epochs, every that many steps or that much time, so a crash or kill loses at most
      that much (`--resume last` continues inside the epoch, exactly). Checked every
      `trainer.log_every_n_steps` steps: a multiple of it saves at exact step counts. The best-k
      checkpoints stay per epoch, since their monitor is a validation metric.
    """

    runs_last = True

    def __init__(self, dirpath: str | Path | None = None, monitor: str = "val/nll", mode: str = "min",
                 save_top_k: int = 1, save_last: bool = True,
                 filename: str = "epoch={epoch}-val_nll={val/nll:.4f}", every_n_epochs: int = 1,
                 every_n_train_steps: int | None = None, train_time_interval: float | str | None = None):
        _check_mode(mode, "ModelCheckpoint")
        if every_n_train_steps is not None and (isinstance(every_n_train_steps, bool) or every_n_train_steps < 1):
            raise TrainingError(f"ModelCheckpoint: every_n_train_steps must be >= 1, got {every_n_train_steps!r}")
        try:
            self.train_time_interval = parse_duration(train_time_interval, what="ModelCheckpoint: train_time_interval")
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        self.every_n_train_steps = every_n_train_steps
        if self.wants_train_batch_end and not save_last:
            raise TrainingError("ModelCheckpoint: every_n_train_steps and train_time_interval refresh last/; "
                                "they need save_last=True")
        if save_top_k < -1:
            raise TrainingError(f"ModelCheckpoint: save_top_k must be >= -1, got {save_top_k}")
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.monitor, self.mode, self.save_top_k, self.save_last = monitor, mode, save_top_k, save_last
        self.filename, self.every_n_epochs = filename, max(1, every_n_epochs)
        self.best_k: list[tuple[float, str]] = []  # (score, path), best first
        self.epochs: dict[str, int] = {}  # path → epoch whose weights it holds

    def setup(self, trainer, stage):
        if self.dirpath is None:
            self.dirpath = Path(trainer.default_root_dir) / "checkpoints"

    @property
    def wants_train_batch_end(self) -> bool:
        return self.every_n_train_steps is not None or self.train_time_interval is not None

    def on_fit_start(self, trainer):
        _check_monitor_exists(trainer, self.monitor, "ModelCheckpoint")
        self._saved_at = (trainer.global_step, time.perf_counter())

    def on_train_batch_end(self, trainer, outputs, batch_idx):
        step, t = self._saved_at
        n, interval = self.every_n_train_steps, self.train_time_interval
        due = (n is not None and trainer.global_step // n > step // n) or (
            interval is not None and time.perf_counter() - t >= interval)
        if due and trainer.epoch_step < trainer.summary["steps_per_epoch"]:  # the epoch's end saves anyway
            self._save_last(trainer)

    def _save_last(self, trainer):
        trainer.save_checkpoint(self.dirpath / "last")
        self._saved_at = (trainer.global_step, time.perf_counter())

    @property
    def best_model_path(self) -> str | None:
        return self.best_k[0][1] if self.best_k else None

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose weights the best checkpoint holds."""
        return self.epochs.get(self.best_model_path) if self.best_k else None

    @property
    def best_model_score(self) -> float | None:
        return self.best_k[0][0] if self.best_k else None

    @property
    def last_model_path(self) -> str | None:
        return str(self.dirpath / "last") if self.save_last and self.dirpath else None

    def on_train_epoch_end(self, trainer):
        epoch = trainer.current_epoch
        due = (epoch + 1) % self.every_n_epochs == 0 or trainer.should_stop or epoch + 1 == trainer.max_epochs
        if due and self.save_top_k != 0:
            score = _monitored(trainer, self.monitor, "ModelCheckpoint")
            fields = _Formatter(trainer.logged_metrics, epoch=epoch, step=trainer.global_step)
            name = self.filename.format_map(fields).replace("/", "_")
            path = str(self.dirpath / name)
            worst = self.best_k[-1][0] if self.best_k else None
            full = self.save_top_k != -1 and len(self.best_k) >= self.save_top_k
            if math.isfinite(score) and (not full or _improved(score, worst, self.mode)):
                self.best_k.append((score, path))
                self.best_k.sort(key=lambda sp: -sp[0] if self.mode == "max" else sp[0])
                dropped = self.best_k[self.save_top_k:] if self.save_top_k != -1 else []
                self.best_k = self.best_k[: len(self.best_k) - len(dropped)]
                kept = {p for _, p in self.best_k}
                self.epochs = {p: e for p, e in self.epochs.items() if p in kept}
                self.epochs[path] = epoch
                trainer.save_checkpoint(path)
                for _, old in dropped:
                    if old != path:
                        trainer.remove_checkpoint(old)
        if self.save_last:
            self._save_last(trainer)

    def on_train_end(self, trainer):
        """`max_time` stopped training inside an epoch: save that state as `interrupted/` to resume from
        (here, before EarlyStopping's `on_fit_end` puts the best epoch's weights back)."""
        if trainer.time_limit_reached and trainer.epoch_step > 0 and self.dirpath is not None:
            trainer.save_checkpoint(self.dirpath / "interrupted")

    def on_exception(self, trainer, exception):
        """On Ctrl-C, SIGTERM or SIGUSR1, save the state reached (possibly mid-epoch) as `interrupted/`."""
        if isinstance(exception, KeyboardInterrupt) and trainer.params is not None and self.dirpath is not None:
            path = trainer.save_checkpoint(self.dirpath / "interrupted")
            exception.checkpoint_path = str(path)

    def state_dict(self):
        return {"best_k": [list(x) for x in self.best_k], "dirpath": str(self.dirpath) if self.dirpath else None,
                "epochs": dict(self.epochs)}

    def load_state_dict(self, state):
        self.best_k = [(float(s), str(p)) for s, p in state["best_k"]]
        self.epochs = {str(p): int(e) for p, e in state.get("epochs", {}).items()}


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


__all__ = ["HOOKS", "Callback", "wants_batch_hooks", "ValidationMetrics", "EarlyStopping", "ModelCheckpoint",
           "TerminateOnNaN"]

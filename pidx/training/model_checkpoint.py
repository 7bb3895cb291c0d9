"""ModelCheckpoint: the top-k checkpoints by a monitored metric, `last/`, and `interrupted/` on a kill."""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..errors import TrainingError
from ..utils import parse_duration
from .callbacks import Callback, check_mode, check_monitor_exists, improved, monitored_state_key, monitored_value


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
    - `state_key`: the key of its state in checkpoints (default `ModelCheckpoint{monitor=…,mode=…}`,
      so two ModelCheckpoint callbacks on different monitors resume each its own state).
    """

    runs_last = True

    def __init__(self, dirpath: str | Path | None = None, monitor: str = "val/nll", mode: str = "min",
                 save_top_k: int = 1, save_last: bool = True,
                 filename: str = "epoch={epoch}-val_nll={val/nll:.4f}", every_n_epochs: int = 1,
                 every_n_train_steps: int | None = None, train_time_interval: float | str | None = None,
                 state_key: str | None = None):
        check_mode(mode, "ModelCheckpoint")
        self._state_key = state_key or monitored_state_key(self, monitor, mode)
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
        check_monitor_exists(trainer, self.monitor, "ModelCheckpoint")
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
            score = monitored_value(trainer, self.monitor, "ModelCheckpoint")
            fields = _Formatter(trainer.logged_metrics, epoch=epoch, step=trainer.global_step)
            name = self.filename.format_map(fields).replace("/", "_")
            path = str(self.dirpath / name)
            worst = self.best_k[-1][0] if self.best_k else None
            full = self.save_top_k != -1 and len(self.best_k) >= self.save_top_k
            if math.isfinite(score) and (not full or improved(score, worst, self.mode)):
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

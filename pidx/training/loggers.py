"""Callbacks that report: the CSV history, the progress bar and TensorBoard.

In a multi-process run only process 0 (`trainer.is_global_zero`) writes or prints.
An MLflow or Weights & Biases logger is a small user callback of the same shape
(docs/callbacks.md shows one).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import time
from pathlib import Path

from ..errors import TrainingError
from ..utils import atomic_path
from .callbacks import Callback


class CSVLogger(Callback):
    """Write the epoch history to `history.csv` (atomically, after every epoch), and the checks of
    `val_check_interval` inside epochs to `val_checks.csv` beside it."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None

    def setup(self, trainer, stage):
        if self.path is None:
            self.path = Path(trainer.default_root_dir) / "history.csv"

    def on_train_epoch_end(self, trainer):
        if trainer.is_global_zero:
            self.write(trainer.history)
            self.write(trainer.step_validations, self.path.with_name("val_checks.csv"))

    def on_validation_end(self, trainer):
        if trainer.validating_inside_epoch and trainer.is_global_zero:
            self.write(trainer.step_validations + [trainer.logged_metrics], self.path.with_name("val_checks.csv"))

    def write(self, history: list[dict], path: Path | None = None) -> None:
        if not history:
            return
        keys = list(dict.fromkeys(k for row in history for k in row))
        with atomic_path(path or self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)


class TensorBoardLogger(Callback):
    """TensorBoard event files (tensorboardX): every step's training loss, and at each epoch end
    every numeric logged metric (validation metrics, learning rate, throughput) at its global step.

    Step losses are read from the epoch's losses at its end, so logging them costs no host sync
    inside the epoch. View with `tensorboard --logdir <root>/tensorboard`.

    **Arguments:**

    - `save_dir`: directory of the event files (default `<trainer.default_root_dir>/tensorboard`).
    - `log_step_loss`: also write the per-step training loss (`train/step_loss`).
    """

    def __init__(self, save_dir: str | Path | None = None, log_step_loss: bool = True):
        if importlib.util.find_spec("tensorboardX") is None:
            raise TrainingError("TensorBoardLogger needs tensorboardX: pip install 'pidx[tensorboard]'")
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.log_step_loss = log_step_loss
        self.writer = None

    def setup(self, trainer, stage):
        if self.save_dir is None:
            self.save_dir = Path(trainer.default_root_dir) / "tensorboard"

    def on_fit_start(self, trainer):
        if trainer.is_global_zero:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=str(self.save_dir))

    def on_validation_end(self, trainer):
        if self.writer is not None and trainer.validating_inside_epoch:  # a val_check_interval check
            self._scalars(trainer, lambda name: name.startswith("val/"))

    def _scalars(self, trainer, keep) -> None:
        for name, value in trainer.logged_metrics.items():
            if keep(name) and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(name, value, trainer.global_step)
        self.writer.flush()

    def on_train_epoch_end(self, trainer):
        if self.writer is None:
            return
        if self.log_step_loss:
            losses = trainer.epoch_step_losses
            first = trainer.global_step - len(losses)
            for i, loss in enumerate(losses):
                self.writer.add_scalar("train/step_loss", float(loss), first + i + 1)
        self._scalars(trainer, lambda name: name not in ("epoch", "step"))

    def teardown(self, trainer, stage):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressBar(Callback):
    """Rich progress: an epoch bar and, inside the epoch, a step bar with tracks/s and ETA.

    On a terminal the step bar is updated every `trainer.log_every_n_steps` steps (so each epoch's
    on-device scan runs in chunks of that many steps); when output is not a terminal it prints
    one plain line per epoch and leaves the epoch as one scan.
    """

    def __init__(self, refresh_per_second: float = 4.0):
        self.refresh_per_second = refresh_per_second
        self._progress = None
        self._epochs = self._steps = None

    @property
    def wants_train_batch_end(self) -> bool:
        return self._progress is not None

    def on_fit_start(self, trainer):
        from rich.console import Console

        self.console = Console(stderr=True, quiet=not trainer.is_global_zero)
        if self.console.is_terminal and trainer.is_global_zero:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]{task.description}"), MofNCompleteColumn(), BarColumn(),
                                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                      TextColumn("{task.fields[info]}"),
                                      console=self.console, refresh_per_second=self.refresh_per_second)
            self._progress.start()
            self._epochs = self._progress.add_task("epochs done", total=trainer.max_epochs,
                                                   completed=trainer.current_epoch, info="compiling…")

    def on_train_epoch_start(self, trainer):
        if self._progress is None:
            return
        total = trainer.summary.get("steps_per_epoch")
        if self._steps is None:
            self._steps = self._progress.add_task("step", total=total, info="")
        self._progress.reset(self._steps, total=total, completed=trainer.epoch_step, info="")
        self._epoch_t0, self._epoch_first = time.perf_counter(), trainer.epoch_step

    def on_train_batch_end(self, trainer, outputs, batch_idx):
        if self._progress is None:
            return
        done = batch_idx + 1 - self._epoch_first
        rate = done * trainer.summary["batch_size"] / max(time.perf_counter() - self._epoch_t0, 1e-9)
        self._progress.update(self._steps, completed=batch_idx + 1,
                              info=f"{rate:,.0f} tracks/s  loss {outputs['loss']:.4f}")

    def on_train_epoch_end(self, trainer):
        m = trainer.logged_metrics
        parts = [f"step {trainer.global_step}", f"{m.get('throughput/tracks_per_s', 0):,.0f} tracks/s",
                 f"loss {m.get('train/loss', float('nan')):.4f}"]
        parts += [f"{k} {v:.4f}" for k, v in m.items() if k.startswith("val/")]
        info = "  ".join(parts)
        if self._progress is not None:
            self._progress.update(self._epochs, completed=trainer.current_epoch + 1, info=info)
        else:
            # epochs count from 0 everywhere (history.csv, checkpoint names, best epoch), as in Lightning
            self.console.print(f"epoch {trainer.current_epoch}/{trainer.max_epochs - 1}  {info}",
                               highlight=False)

    def teardown(self, trainer, stage):
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._epochs = self._steps = None


__all__ = ["CSVLogger", "TensorBoardLogger", "ProgressBar"]

"""The one decision of which weights are a run's result.

After `Trainer.fit`, the weights the run reports, tests, calibrates, predicts with and
exports are chosen here, once:

1. `EarlyStopping(restore_best_weights=True)` restored its best epoch → those weights;
2. otherwise a `ModelCheckpoint` kept a best checkpoint → that checkpoint's weights
   (loaded into the Trainer);
3. otherwise the weights of the last epoch.

The result is always stored in a checkpoint: `ModelCheckpoint`'s best one when it holds
exactly these weights (same epoch), else `checkpoints/final`, written here. metrics.json's
`training.best_checkpoint` names it, so `pidx test`, `predict`, `report` and `export`
load the very weights metrics.json describes, whatever callbacks and monitors a recipe has.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..training.callbacks import EarlyStopping
from ..training.model_checkpoint import ModelCheckpoint
from ..training.trainer import Trainer
from .rundir import RunDir


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Which weights the run's result is: `source` (`early_stopping`, `model_checkpoint` or
    `last_epoch`), the epoch they come from and the checkpoint that holds them."""

    source: str
    epoch: int | None
    checkpoint: Path


def _first(trainer: Trainer, cls):
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


def decide_result(trainer: Trainer, run: RunDir) -> RunResult:
    """Put the run's result weights into `trainer` and return where they are stored."""
    es, mc = _first(trainer, EarlyStopping), _first(trainer, ModelCheckpoint)
    mc_best = Path(mc.best_model_path) if mc is not None and mc.best_model_path else None
    mc_epoch = mc.best_epoch if mc is not None else None
    if es is not None and es.restore_best_weights and es.best_weights is not None:
        source, epoch = "early_stopping", es.best_epoch  # its on_fit_end put these weights in place
    elif mc_best is not None:
        trainer.load_weights(mc_best)
        return RunResult("model_checkpoint", mc_epoch, mc_best)
    else:
        source, epoch = "last_epoch", trainer.current_epoch - 1
    if mc_best is not None and mc_epoch is not None and mc_epoch == epoch:
        return RunResult(source, epoch, mc_best)  # the checkpoint holds exactly these weights
    return RunResult(source, epoch, trainer.save_checkpoint(run.checkpoint("final")))


__all__ = ["RunResult", "decide_result"]

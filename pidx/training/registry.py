"""The callbacks a recipe may name without an import path (`callbacks: [{EarlyStopping: {...}}]`)."""

from __future__ import annotations

from .callbacks import EarlyStopping, TerminateOnNaN, ValidationMetrics
from .model_checkpoint import ModelCheckpoint
from .loggers import CSVLogger, ProgressBar, TensorBoardLogger
from .weight_averaging import WeightAveraging

BUILTIN_CALLBACKS = {
    cls.__name__: cls for cls in (EarlyStopping, ModelCheckpoint, TerminateOnNaN, CSVLogger, ProgressBar,
                                  ValidationMetrics, TensorBoardLogger, WeightAveraging)
}

__all__ = ["BUILTIN_CALLBACKS"]

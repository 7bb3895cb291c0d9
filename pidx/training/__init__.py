"""Training: the Trainer, callbacks, losses and objectives, metrics, checkpoints and the Predictor."""

from .callbacks import HOOKS, Callback, EarlyStopping, TerminateOnNaN, ValidationMetrics
from .model_checkpoint import ModelCheckpoint
from .loggers import CSVLogger, ProgressBar, TensorBoardLogger
from .registry import BUILTIN_CALLBACKS
from .checkpoint import FORMAT_VERSION, read_meta
from .domain import DANN
from .losses import CrossEntropy, FocalLoss, compute_class_weights, make_loss
from .objectives import Batch, Classification, Objective, Tracks
from .reweight import domain_weights
from .posterior import PosteriorMap, abundances
from .predictor import Predictor, apply_temperature
from .step import make_optimizer, track_average
from .trainer import Trainer
from .weight_averaging import WeightAveraging

__all__ = ["BUILTIN_CALLBACKS", "HOOKS", "Callback", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ProgressBar",
           "TensorBoardLogger", "TerminateOnNaN", "ValidationMetrics", "FORMAT_VERSION", "read_meta", "CrossEntropy", "FocalLoss",
           "compute_class_weights", "make_loss", "PosteriorMap", "abundances", "Predictor", "apply_temperature", "make_optimizer",
           "track_average", "Trainer", "WeightAveraging", "DANN", "Batch", "Classification", "Objective", "Tracks",
           "domain_weights"]

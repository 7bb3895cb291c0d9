"""pidx: particle identification for ALICE with JAX + Equinox.

The public API, re-exported explicitly:

- simulation: `simulate`, `SimulatorConfig` (`pidx.simulation`: the embedded simulator and its oracles);
- data: `load_tracks`, `TrackDataModule`, `ArrayDataModule`,
  `TrackArrays`, `Preprocessor`, `DetectorGroup`, `FeatureLayout`, `make_layout`, `DEFAULT_LAYOUT`,
  `TrackSelection`, the file layouts `O2` and `LEGACY` (`pidx.data.layouts`);
- models: `SimpleNN`, `DNN`, `FSEAttention`, `DetectorAwareFSE`, `PIDModel`, `build_model`,
  `Ensemble`, `make_ensemble` (K members trained in one vmapped program);
- deployment: `pidx.export` (ONNX export with the preprocessing in the graph);
- training: `Trainer`, `Callback` and the built-in callbacks, `FocalLoss`, `CrossEntropy`,
  `compute_class_weights`, `make_optimizer`; objectives (`Objective`, `Classification`, `DANN`, with
  `conditional=True` CDAN);
- recipes: `load_recipe`, `validate_recipe`, `Recipe` (typed, frozen sections);
- runs: `fit_recipe`, `RunDir`, `test_run`, `predict_file`, `export_run` (`pidx.runs`);
- prediction: `Predictor` (a trained model with its preprocessing, no optimizer) and
  `PosteriorMap` (raw network outputs → posteriors, re-weightable to other abundances);
- evaluation: `classification_metrics`;
- calibration and uncertainty: `pidx.evaluation.calibration`, `pidx.evaluation.uncertainty`;
- errors: `PidxError` and its subclasses.
"""

from .data import (
    CLASS_NAMES, DEFAULT_LAYOUT, FEATURE_COLUMNS, ArrayDataModule, DetectorGroup, FeatureLayout, Preprocessor,
    LEGACY, O2, TrackArrays, TrackDataModule, TrackSelection, load_tracks, make_layout,
)
from .simulation import SimulatorConfig, simulate
from .errors import CheckpointError, DataError, ExportError, PidxError, RecipeError, TrainingError
from .evaluation import classification_metrics
from .models import DNN, DetectorAwareFSE, Ensemble, FSEAttention, PIDModel, SimpleNN, build_model, make_ensemble
from .recipe import Recipe, load_recipe, validate_recipe
from .runs import RunDir, export_run, fit_recipe, predict_file, test_run
from .training import (
    DANN, Callback, Classification, CrossEntropy, CSVLogger, EarlyStopping, Objective, FocalLoss, ModelCheckpoint, ProgressBar, TensorBoardLogger,
    TerminateOnNaN, PosteriorMap, Predictor, Trainer, ValidationMetrics, WeightAveraging, compute_class_weights,
    make_optimizer,
)

from ._version import __version__

__all__ = [
    "CLASS_NAMES", "DEFAULT_LAYOUT", "FEATURE_COLUMNS", "ArrayDataModule", "DetectorGroup", "FeatureLayout",
    "Preprocessor", "SimulatorConfig", "TrackArrays", "TrackDataModule", "load_tracks", "make_layout", "simulate",
    "LEGACY", "O2", "TrackSelection",
    "CheckpointError", "DataError", "ExportError", "PidxError", "RecipeError", "TrainingError", "classification_metrics",
    "DNN", "DetectorAwareFSE", "Ensemble", "FSEAttention", "PIDModel", "SimpleNN", "build_model",
    "make_ensemble", "load_recipe",
    "validate_recipe", "Recipe", "RunDir", "export_run", "fit_recipe", "predict_file", "test_run", "Predictor", "PosteriorMap", "Callback", "CrossEntropy", "CSVLogger", "EarlyStopping", "FocalLoss", "ModelCheckpoint",
    "ProgressBar", "TensorBoardLogger", "TerminateOnNaN", "Trainer", "ValidationMetrics", "WeightAveraging",
    "compute_class_weights", "make_optimizer", "DANN", "Classification", "Objective", "__version__",
]

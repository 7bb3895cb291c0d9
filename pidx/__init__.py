"""pidx: particle identification for ALICE with JAX + Equinox."""

from .data import (
    CLASS_NAMES, DEFAULT_LAYOUT, FEATURE_COLUMNS, DetectorGroup, FeatureLayout, Preprocessor,
    SimulatorConfig, TrackArrays, TrackDataModule, load_tracks, make_layout, simulate,
)
from .errors import CheckpointError, DataError, PidxError, RecipeError, TrainingError

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES", "DEFAULT_LAYOUT", "FEATURE_COLUMNS", "DetectorGroup", "FeatureLayout", "Preprocessor",
    "SimulatorConfig", "TrackArrays", "TrackDataModule", "load_tracks", "make_layout", "simulate",
    "CheckpointError", "DataError", "PidxError", "RecipeError", "TrainingError", "__version__",
]

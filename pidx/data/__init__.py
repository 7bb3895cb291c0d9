"""Track data: schema, layouts, file reading, validation, preprocessing, the data module (the simulator is `pidx.simulation`)."""

from .datamodule import MOMENTUM_RANGES, ArrayDataModule, TrackArrays, TrackDataModule, arrays_from_table, resolve_momentum_range
from .io import TrackTable, encode_missing, load_tracks, read_table, tracks_from_frame, validate_tracks, write_table
from .layouts import LEGACY, O2, O2_VECTOR_COLUMNS, TrackLayout, detect_layout, o2_vector
from .selection import TrackSelection
from .preprocess import Preprocessor
from .schema import (
    CLASS_NAMES, CLASS_PDG, DEFAULT_LAYOUT, FEATURE_COLUMNS, LABEL_COLUMN, NUM_CLASSES, DetectorGroup,
    FeatureLayout, make_layout,
)

__all__ = [
    "MOMENTUM_RANGES", "ArrayDataModule", "TrackArrays", "TrackDataModule", "arrays_from_table", "resolve_momentum_range",
    "TrackTable", "encode_missing", "load_tracks", "read_table", "tracks_from_frame", "validate_tracks", "write_table",
    "LEGACY", "O2", "O2_VECTOR_COLUMNS", "TrackLayout", "detect_layout", "o2_vector", "TrackSelection",
    "Preprocessor", "CLASS_NAMES", "CLASS_PDG", "DEFAULT_LAYOUT", "FEATURE_COLUMNS", "LABEL_COLUMN",
    "NUM_CLASSES", "DetectorGroup", "FeatureLayout", "make_layout",
]

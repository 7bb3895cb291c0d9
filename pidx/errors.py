"""Exception types raised by pidx.

Every error a user can cause (a bad file, a bad recipe, a broken checkpoint) is a
`PidxError` with a message that names the file, column, key or value and says what
would be accepted. The CLI prints these as one line; anything else is a bug.
"""

from __future__ import annotations


class PidxError(Exception):
    """Base class of every error pidx raises on purpose."""


class DataError(PidxError, ValueError):
    """A track table or data source is unusable (missing column, bad values, ...)."""


class RecipeError(PidxError, ValueError):
    """A recipe (YAML config) is malformed: unknown key, wrong type, bad value."""


class CheckpointError(PidxError):
    """A checkpoint is missing, truncated, corrupted or of another format version."""


class TrainingError(PidxError, RuntimeError):
    """Training cannot go on (NaN loss, misconfigured callback, ...)."""


class ExportError(PidxError):
    """A model, run or option that cannot be exported (e.g. to ONNX)."""


__all__ = ["PidxError", "DataError", "RecipeError", "CheckpointError", "TrainingError", "ExportError"]

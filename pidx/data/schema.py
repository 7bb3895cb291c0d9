"""The track table: columns, classes, detector groups and missing-value conventions.

One row per reconstructed track. The 21 feature columns and the label `mc_pdg` are
the ones the ALICE PID feature extractor writes. Detector groups are *data*: a
`DetectorGroup` names its columns and the flag column that says whether the detector
measured the track, so a user can add a group (say TRD) without touching model code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..errors import DataError

# Classes in the order every array, probability column and report uses.
CLASS_NAMES: tuple[str, ...] = ("pi", "ka", "pr", "el")
CLASS_LABELS: tuple[str, ...] = ("pion", "kaon", "proton", "electron")
CLASS_PDG: tuple[int, ...] = (211, 321, 2212, 11)
NUM_CLASSES = len(CLASS_NAMES)
MASSES_GEV: tuple[float, ...] = (0.13957, 0.49368, 0.93827, 0.000511)

LABEL_COLUMN = "mc_pdg"
KINEMATIC_COLUMNS = ("pt", "eta", "phi", "dca_xy", "dca_z")
TPC_COLUMNS = ("tpc_signal",) + tuple(f"tpc_nsigma_{c}" for c in CLASS_NAMES)
TOF_COLUMNS = ("tof_beta",) + tuple(f"tof_nsigma_{c}" for c in CLASS_NAMES)
BAYES_COLUMNS = tuple(f"bayes_prob_{c}" for c in CLASS_NAMES)
FLAG_COLUMNS = ("has_tpc", "has_tof")
FEATURE_COLUMNS: tuple[str, ...] = (
    KINEMATIC_COLUMNS + TPC_COLUMNS + TOF_COLUMNS + BAYES_COLUMNS + FLAG_COLUMNS
)
assert len(FEATURE_COLUMNS) == 21

# Derived flag: the Bayes group has no flag column in extractor output.
BAYES_FLAG = "bayes_available"
# Written by the simulator beside the features: the exact Bayes-optimal posterior.
ORACLE_COLUMNS = tuple(f"oracle_prob_{c}" for c in CLASS_NAMES)
# O2 layout only: the exact posterior given what the 46-value model vector carries (the ceiling
# of a model that reads that vector; the oracle above also sees the per-layer ITS cluster sizes).
VECTOR_ORACLE_COLUMNS = tuple(f"vector_oracle_prob_{c}" for c in CLASS_NAMES)
PROB_COLUMNS = tuple(f"prob_{c}" for c in CLASS_NAMES)

# Missing-value conventions of real extractor output.
DEFAULT_SENTINELS: tuple[float, ...] = (-999.0,)
BAYES_MISSING_ROWS: tuple[float, ...] = (0.0, 0.25)  # all-zero or all-0.25 rows
BAYES_TOKEN = -0.25  # what a missing Bayes probability becomes after preprocessing


@dataclasses.dataclass(frozen=True)
class DetectorGroup:
    """A set of columns measured by one detector (or one reconstruction step).

    **Arguments:**

    - `name`: short identifier, used as the token name in FSE models and in reports.
    - `columns`: feature columns of the group, in the order the model sees them.
    - `flag`: column (0/1) that says the group was measured for a track, or `None`
      for a group that is always present (kinematics).
    - `missing_fill`: value the group's features take after preprocessing where
      the group is missing (0 = the train median after scaling; the Bayes group
      uses the token -0.25).
    - `scale`: whether the features are robust-scaled (probabilities are not).
    - `absent_if_invalid`: a NaN, inf or sentinel where the flag says present makes the
      group absent for that track (counted in the load summary) instead of an error; the
      O2 extractor writes such rows (the old PID path blanks TOF below 0.5 GeV/c).
    """

    name: str
    columns: tuple[str, ...]
    flag: str | None = None
    missing_fill: float = 0.0
    scale: bool = True
    absent_if_invalid: bool = False

    def __post_init__(self):
        if not self.name or not self.columns:
            raise DataError(f"DetectorGroup needs a name and at least one column, got {self!r}")
        object.__setattr__(self, "columns", tuple(self.columns))


KINEMATICS = DetectorGroup("kinematics", KINEMATIC_COLUMNS, flag=None)
TPC = DetectorGroup("tpc", TPC_COLUMNS, flag="has_tpc")
TOF = DetectorGroup("tof", TOF_COLUMNS, flag="has_tof")
BAYES = DetectorGroup("bayes", BAYES_COLUMNS, flag=BAYES_FLAG, missing_fill=BAYES_TOKEN, scale=False)
DEFAULT_GROUPS: tuple[DetectorGroup, ...] = (TPC, TOF, BAYES, KINEMATICS)


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Where each detector group sits in the model's feature vector.

    The feature vector is the groups' columns concatenated in group order, then one
    0/1 availability feature per group that has a flag (so MLPs see availability
    too). FSE models slice `group_slices`; MLPs take the whole vector.
    """

    groups: tuple[DetectorGroup, ...]

    def __post_init__(self):
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise DataError(f"detector group names must be unique, got {names}")
        cols = [c for g in self.groups for c in g.columns]
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise DataError(f"columns {dup} belong to more than one detector group")

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def flagged_groups(self) -> tuple[DetectorGroup, ...]:
        return tuple(g for g in self.groups if g.flag is not None)

    @property
    def feature_names(self) -> tuple[str, ...]:
        cols = tuple(c for g in self.groups for c in g.columns)
        return cols + tuple(f"available_{g.name}" for g in self.flagged_groups)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def group_slices(self) -> tuple[tuple[int, int], ...]:
        """(start, stop) of each group's columns in the feature vector."""
        out, start = [], 0
        for g in self.groups:
            out.append((start, start + len(g.columns)))
            start += len(g.columns)
        return tuple(out)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Table columns needed to build the features (flags included)."""
        cols = [c for g in self.groups for c in g.columns]
        cols += [g.flag for g in self.groups if g.flag is not None and g.flag != BAYES_FLAG]
        return tuple(dict.fromkeys(cols))

    def with_groups(self, extra_groups: Sequence[DetectorGroup] = ()) -> "FeatureLayout":
        """This layout with user groups inserted before the last group (kinematics)."""
        return FeatureLayout(self.groups[:-1] + tuple(extra_groups) + self.groups[-1:])

    def to_dict(self) -> dict:
        return {"groups": [dataclasses.asdict(g) for g in self.groups]}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureLayout":
        return cls(tuple(DetectorGroup(**{**g, "columns": tuple(g["columns"])}) for g in d["groups"]))


DEFAULT_LAYOUT = FeatureLayout(DEFAULT_GROUPS)


def make_layout(extra_groups: Sequence[DetectorGroup] = ()) -> FeatureLayout:
    """The default layout plus user groups (inserted before kinematics)."""
    return DEFAULT_LAYOUT.with_groups(extra_groups)


def pdg_to_class(pdg: np.ndarray, *, source: str = "table") -> np.ndarray:
    """Map PDG codes (either sign) to class indices 0..3.

    **Arguments:**

    - `pdg`: integer-valued array of PDG codes.
    - `source`: name of the file or table, used in the error message.

    Raises `DataError` listing every unknown code and its count.
    """
    pdg = np.asarray(pdg)
    codes = np.abs(pdg.astype(np.int64))
    out = np.full(codes.shape, -1, dtype=np.int32)
    for i, code in enumerate(CLASS_PDG):
        out[codes == code] = i
    bad = out < 0
    if bad.any():
        values, counts = np.unique(pdg[bad], return_counts=True)
        listing = ", ".join(f"{int(v)} ({int(n)} rows)" for v, n in zip(values, counts))
        raise DataError(
            f"{source}: column '{LABEL_COLUMN}' has unknown PDG codes: {listing}; "
            f"accepted are ±{', ±'.join(map(str, CLASS_PDG))} "
            "(set data.other_species to exclude or contamination to train on π, K, p, e and count the others)"
        )
    return out


__all__ = [
    "CLASS_NAMES", "CLASS_LABELS", "CLASS_PDG", "NUM_CLASSES", "MASSES_GEV", "LABEL_COLUMN",
    "KINEMATIC_COLUMNS", "TPC_COLUMNS", "TOF_COLUMNS", "BAYES_COLUMNS", "FLAG_COLUMNS",
    "FEATURE_COLUMNS", "BAYES_FLAG", "ORACLE_COLUMNS", "VECTOR_ORACLE_COLUMNS", "PROB_COLUMNS", "DEFAULT_SENTINELS",
    "BAYES_MISSING_ROWS", "BAYES_TOKEN", "DetectorGroup", "FeatureLayout", "KINEMATICS", "TPC",
    "TOF", "BAYES", "DEFAULT_GROUPS", "DEFAULT_LAYOUT", "make_layout", "pdg_to_class",
]

"""The two track-file layouts pidx reads, as data: O2 (`pid_features`) and legacy (21 columns).

- **o2**: what O2Physics `Tools/PIDFeatureExtractor/pidFeatureExtractor.cxx` writes (tree
  `pid_features`, camelCase branches, seven detector groups, centrality, Bayes, MC truth). The
  model input is **the 46-value vector `pidOnnxInference.cxx` builds** (`O2_VECTOR`, one row
  per slot), computed by `o2_vector` so training, `pidx predict` and the exported graph see
  the same numbers.
- **legacy**: the 21 snake_case columns of the seed's fork of the extractor.

A `TrackLayout` names its raw columns, the detector groups the model sees (a
`FeatureLayout` over the *canonical* columns), the columns the classic baselines read, and
how to turn a raw table into canonical columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .schema import (
    BAYES, BAYES_FLAG, BAYES_TOKEN, CLASS_NAMES, DEFAULT_LAYOUT, FEATURE_COLUMNS, LABEL_COLUMN, DetectorGroup,
    FeatureLayout,
)

# ----------------------------------------------------------------------------- O2 branches
_F, _I, _B, _U8 = "float", "int", "bool", "uint8"
# Every branch of `pid_features` in the extractor's order, with the C++ type it is declared with.
O2_BRANCHES: dict[str, str] = {
    "p": _F, "pt": _F, "px": _F, "py": _F, "pz": _F, "eta": _F, "phi": _F, "sign": _F, "trackType": _I,
    "vz": _F, "centFT0C": _F, "dcaXY": _F, "dcaZ": _F,
    "hasTPC": _B, "tpcSignal": _F, "tpcNSigmaPi": _F, "tpcNSigmaKa": _F, "tpcNSigmaPr": _F, "tpcNSigmaEl": _F,
    "tpcNClsFound": _I, "tpcChi2NCl": _F,
    "hasTOF": _B, "tofMass": _F, "beta": _F, "tofNSigmaPi": _F, "tofNSigmaKa": _F, "tofNSigmaPr": _F,
    "tofNSigmaEl": _F,
    "hasTRD": _B, "trdSignal": _F, "trdChi2": _F, "trdPattern": _I,
    "itsClusterSizes": _I, "itsChi2NCl": _F,
    "hasEMCal": _B, "trackEtaEmcal": _F, "trackPhiEmcal": _F,
    "hasHMPID": _B, "hmpidSignal": _F, "hmpidQMip": _F, "hmpidNPhotons": _I, "hmpidClusSize": _I, "hmpidMom": _F,
    "bayesProbPi": _F, "bayesProbKa": _F, "bayesProbPr": _F, "bayesProbEl": _F,
}
O2_MC_BRANCHES: dict[str, str] = {"mcPdg": _I, "mcIsPhysicalPrimary": _U8}
O2_FILE_BRANCHES: dict[str, str] = {**O2_BRANCHES, **O2_MC_BRANCHES}  # an MC-mode file
O2_LABEL = "mcPdg"
O2_BAYES_COLUMNS = ("bayesProbPi", "bayesProbKa", "bayesProbPr", "bayesProbEl")
O2_TOGGLES = ("tpc", "tof", "trd", "its", "emcal", "hmpid", "centrality")  # pidOnnxInference's use* switches
ITS_LAYERS, ITS_BITS = 7, 4


@dataclasses.dataclass(frozen=True)
class VectorSlot:
    """One value of the O2 model vector.

    - `name`: canonical column name (the branch name where the slot copies a branch).
    - `kind`: `value` (float, NaN when the group is off), `count` (integer, 0 when off),
      `flag` (the group's effective presence), `mask` (presence again, in the 7-slot mask),
      `its_count` (layers with a cluster in `itsClusterSizes`).
    - `group`: the toggle that switches it off (`None` for kinematics).
    - `branch`: the raw branch it reads.
    """

    name: str
    kind: str
    group: str | None = None
    branch: str | None = None


def _slots() -> tuple[VectorSlot, ...]:
    s = [VectorSlot(b, "value", None, b) for b in ("p", "pt", "px", "py", "pz", "eta", "phi", "dcaXY", "dcaZ")]
    s += [VectorSlot("hasTPC", "flag", "tpc", "hasTPC")]
    s += [VectorSlot(b, "value", "tpc", b) for b in ("tpcSignal", "tpcNSigmaPi", "tpcNSigmaKa", "tpcNSigmaPr",
                                                      "tpcNSigmaEl")]
    s += [VectorSlot("tpcNClsFound", "count", "tpc", "tpcNClsFound"), VectorSlot("tpcChi2NCl", "value", "tpc",
                                                                                  "tpcChi2NCl")]
    s += [VectorSlot("hasTOF", "flag", "tof", "hasTOF")]
    s += [VectorSlot(b, "value", "tof", b) for b in ("tofMass", "beta", "tofNSigmaPi", "tofNSigmaKa", "tofNSigmaPr",
                                                      "tofNSigmaEl")]
    s += [VectorSlot("hasTRD", "flag", "trd", "hasTRD"), VectorSlot("trdSignal", "value", "trd", "trdSignal"),
          VectorSlot("trdChi2", "value", "trd", "trdChi2"), VectorSlot("trdPattern", "count", "trd", "trdPattern")]
    s += [VectorSlot("itsNCls", "its_count", "its", "itsClusterSizes"),
          VectorSlot("itsChi2NCl", "value", "its", "itsChi2NCl")]
    s += [VectorSlot("hasEMCal", "flag", "emcal", "hasEMCal"),
          VectorSlot("trackEtaEmcal", "value", "emcal", "trackEtaEmcal"),
          VectorSlot("trackPhiEmcal", "value", "emcal", "trackPhiEmcal")]
    s += [VectorSlot("hasHMPID", "flag", "hmpid", "hasHMPID")]
    s += [VectorSlot(b, "count" if b in ("hmpidNPhotons", "hmpidClusSize") else "value", "hmpid", b)
          for b in ("hmpidSignal", "hmpidQMip", "hmpidNPhotons", "hmpidClusSize", "hmpidMom")]
    s += [VectorSlot(f"mask{n}", "mask", t) for n, t in zip(("TPC", "TOF", "TRD", "ITS", "EMCal", "HMPID",
                                                            "Centrality"), O2_TOGGLES)]
    return tuple(s)


O2_VECTOR: tuple[VectorSlot, ...] = _slots()
O2_VECTOR_COLUMNS: tuple[str, ...] = tuple(s.name for s in O2_VECTOR)
assert len(O2_VECTOR) == 46
# the has* branch of each group that has one (ITS and centrality have only their use* toggle)
_GROUP_FLAG = {s.group: s.branch for s in O2_VECTOR if s.kind == "flag"}


def its_cluster_sizes(cluster_sizes) -> np.ndarray:
    """Cluster size per layer `[N, 7]` (0 = no cluster): the 4-bit nibbles of `itsClusterSizes`."""
    v = np.asarray(cluster_sizes).astype(np.int64) & 0xFFFFFFFF  # the C++ casts to uint32_t
    return np.stack([(v >> (ITS_BITS * layer)) & 0xF for layer in range(ITS_LAYERS)], axis=1)


def its_cluster_count(cluster_sizes) -> np.ndarray:
    """Layers with a cluster: the non-zero 4-bit nibbles of `itsClusterSizes` (7 layers)."""
    return (its_cluster_sizes(cluster_sizes) != 0).sum(axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- inputs beyond the vector
ITS_SIZE_COLUMNS = tuple(f"itsClusterSize{layer}" for layer in range(ITS_LAYERS))
# ALICE's ITS PID variable: the mean cluster size over layers with a cluster, times cos λ = 1/cosh η
ITS_MEAN_SIZE = "itsMeanClusterSizeCosLam"
# Named opt-in model inputs the 46-value vector drops. A model that uses them runs on pidx
# and the plain ONNX export (they are extra input columns), not in pid-onnx-inference.
O2_EXTRA_INPUTS: dict[str, DetectorGroup] = {
    # no flag of its own: with ITS switched off the sizes read 0, a track without clusters
    "its_cluster_sizes": DetectorGroup("its_cluster_sizes", ITS_SIZE_COLUMNS + (ITS_MEAN_SIZE,)),
    "centrality": DetectorGroup("centrality", ("centFT0C",)),
}


def its_size_columns(columns: Mapping[str, np.ndarray], disabled: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Per-layer ITS cluster sizes and their mean × cos λ, as float32 columns (0 = no cluster,
    or ITS disabled), derived from `itsClusterSizes` and `eta`."""
    sizes = its_cluster_sizes(columns["itsClusterSizes"]).astype(np.float64)
    if "its" in disabled:
        sizes[:] = 0.0
    hits = (sizes > 0).sum(axis=1)
    mean = np.where(hits > 0, sizes.sum(axis=1) / np.maximum(hits, 1), 0.0)
    out = {c: sizes[:, i].astype(np.float32) for i, c in enumerate(ITS_SIZE_COLUMNS)}
    out[ITS_MEAN_SIZE] = (mean / np.cosh(np.asarray(columns["eta"], np.float64))).astype(np.float32)
    return out


def o2_vector(columns: Mapping[str, np.ndarray], disabled: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The 46 model inputs of `pidOnnxInference.cxx`'s `runInference`, as float32 columns.

    **Arguments:**

    - `columns`: raw `pid_features` branches (any numeric dtype).
    - `disabled`: groups switched off as with the task's `use*` options (`tpc`, `tof`,
      `trd`, `its`, `emcal`, `hmpid`, `centrality`): they look exactly like absent detectors.
    """
    unknown = sorted(set(disabled) - set(O2_TOGGLES))
    if unknown:
        raise DataError(f"unknown detector groups to disable {unknown}; accepted are {list(O2_TOGGLES)}")
    use = {t: t not in disabled for t in O2_TOGGLES}
    n = len(np.asarray(columns["pt"]))
    effective = {g: (np.asarray(columns[f]) != 0) & use[g] for g, f in _GROUP_FLAG.items()}
    effective["its"] = np.full(n, use["its"])
    effective["centrality"] = np.full(n, use["centrality"])
    out = {}
    for slot in O2_VECTOR:
        on = effective.get(slot.group) if slot.group else None
        if slot.kind in ("flag", "mask"):
            v = on.astype(np.float32)
        elif slot.kind == "its_count":
            v = np.where(on, its_cluster_count(columns[slot.branch]), 0).astype(np.float32)
        else:
            raw = np.asarray(columns[slot.branch]).astype(np.float32)
            v = raw if on is None else np.where(on, raw, np.float32(0.0 if slot.kind == "count" else np.nan))
        out[slot.name] = v.astype(np.float32)
    return out


# ----------------------------------------------------------------------------- plausible values
def _both(o2: str, legacy: str | None, bounds) -> dict:
    return {o2: bounds, **({legacy: bounds} if legacy else {})}


_NSIGMA = (-1e4, 1e4)
# What a detector can produce, per canonical column of either layout: a value outside (or inf)
# under a present flag is no measurement (pidx.data.validate). Generous on purpose: these catch
# corrupt values (1e30, a negative momentum), never a tail of a real distribution.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    **_both("p", None, (1e-4, 1e4)), **_both("pt", "pt", (1e-4, 1e4)),
    "px": (-1e4, 1e4), "py": (-1e4, 1e4), "pz": (-1e4, 1e4),
    **_both("eta", "eta", (-20.0, 20.0)), **_both("phi", "phi", (-7.0, 7.0)),
    **_both("dcaXY", "dca_xy", (-1e3, 1e3)), **_both("dcaZ", "dca_z", (-1e3, 1e3)),
    **_both("tpcSignal", "tpc_signal", (0.0, 1e4)), "tpcNClsFound": (0.0, 159.0), "tpcChi2NCl": (0.0, 1e3),
    **{c: _NSIGMA for d in ("tpc", "tof") for c in
       [f"{d}NSigma{s}" for s in ("Pi", "Ka", "Pr", "El")] + [f"{d}_nsigma_{s}" for s in CLASS_NAMES]},
    **_both("beta", "tof_beta", (0.0, 2.0)), "tofMass": (-1e3, 1e3),
    "trdSignal": (0.0, 1e4), "trdChi2": (0.0, 1e4), "trdPattern": (0.0, 255.0),
    "itsNCls": (0.0, 7.0), "itsChi2NCl": (0.0, 1e3),
    "trackEtaEmcal": (-20.0, 20.0), "trackPhiEmcal": (-7.0, 7.0),
    "hmpidSignal": (0.0, 2.0), "hmpidQMip": (0.0, 1e6), "hmpidNPhotons": (0.0, 1e4), "hmpidClusSize": (0.0, 1e5),
    "hmpidMom": (0.0, 1e4),
}


# ----------------------------------------------------------------------------- layouts
def _o2_features() -> FeatureLayout:
    """One group per detector of the vector (its flag slot; ITS: its mask slot), kinematics last."""
    groups = []
    for name in O2_TOGGLES[:-1]:  # centrality has no values in the vector
        slots = [s for s in O2_VECTOR if s.group == name]
        flag = next((s.name for s in slots if s.kind == "flag"), None) or next(s.name for s in slots if s.kind == "mask")
        cols = tuple(s.name for s in slots if s.kind not in ("flag", "mask"))
        groups.append(DetectorGroup(name, cols, flag=flag, absent_if_invalid=True))
    kinematics = DetectorGroup("kinematics", tuple(s.name for s in O2_VECTOR if s.group is None))
    return FeatureLayout(tuple(groups) + (kinematics,))


@dataclasses.dataclass(frozen=True)
class TrackLayout:
    """A file layout: raw columns, model groups and the columns the classic baselines read.

    **Arguments:**

    - `name`: `o2` or `legacy`.
    - `required`: raw columns every file of the layout has, with their C++ types.
    - `label`: the raw MC-truth column (signed PDG code).
    - `features`: the detector groups the model sees, over canonical columns.
    - `model_inputs`: the exported graph's input columns, in order.
    - `passengers`: groups validated and kept for baselines but not fed to the model.
    - `nsigma`: per detector (`tpc`, `tof`), the flag and the 4 n-sigma columns.
    - `bayes`: the 4 Bayesian PID columns; `dedx`: the TPC signal column.
    - `primary`: the column saying the track is a physical primary (or None).
    - `beta`: the TOF β column (its flag is `nsigma["tof"][0]`).
    """

    name: str
    required: Mapping[str, str]
    label: str
    features: FeatureLayout
    model_inputs: tuple[str, ...]
    passengers: tuple[DetectorGroup, ...]
    nsigma: Mapping[str, tuple[str, tuple[str, ...]]]
    bayes: tuple[str, ...]
    dedx: str
    primary: str | None = None
    beta: str = "beta"

    def extra_columns(self, features: FeatureLayout) -> tuple[str, ...]:
        """Columns a model with detector groups `features` reads beyond `model_inputs`."""
        return tuple(c for c in features.input_columns if c not in self.model_inputs)

    def canonical(self, df: pd.DataFrame, disabled: tuple[str, ...] = ()) -> pd.DataFrame:
        """Raw table → canonical columns (O2: the 46-vector and the ITS cluster-size columns beside
        the raw branches)."""
        if self.name != "o2":
            if disabled:
                raise DataError(f"disabling detector groups needs the o2 layout; this table is {self.name}")
            return df
        branches = {c: df[c].to_numpy() for c in O2_BRANCHES if c in df}
        derived = {**o2_vector(branches, disabled), **its_size_columns(branches, disabled)}
        out = df.drop(columns=[c for c in derived if c in df]).assign(**derived)
        if LABEL_COLUMN not in out and O2_LABEL in out:
            out[LABEL_COLUMN] = out[O2_LABEL]
        return out


O2 = TrackLayout(
    name="o2", required=O2_BRANCHES, label=O2_LABEL, features=_o2_features(), model_inputs=O2_VECTOR_COLUMNS,
    passengers=(DetectorGroup("bayes", O2_BAYES_COLUMNS, flag=BAYES_FLAG, missing_fill=BAYES_TOKEN, scale=False),
                DetectorGroup("event", ("centFT0C", "vz"))),
    nsigma={"tpc": ("hasTPC", tuple(f"tpcNSigma{c}" for c in ("Pi", "Ka", "Pr", "El"))),
            "tof": ("hasTOF", tuple(f"tofNSigma{c}" for c in ("Pi", "Ka", "Pr", "El")))},
    bayes=O2_BAYES_COLUMNS, dedx="tpcSignal", primary="mcIsPhysicalPrimary")

LEGACY = TrackLayout(
    name="legacy", required={c: (_B if c.startswith("has_") else _F) for c in FEATURE_COLUMNS}, label=LABEL_COLUMN,
    features=DEFAULT_LAYOUT, model_inputs=FEATURE_COLUMNS, passengers=(),
    nsigma={"tpc": ("has_tpc", tuple(f"tpc_nsigma_{c}" for c in CLASS_NAMES)),
            "tof": ("has_tof", tuple(f"tof_nsigma_{c}" for c in CLASS_NAMES))},
    bayes=BAYES.columns, dedx="tpc_signal", beta="tof_beta")

TRACK_LAYOUTS: dict[str, TrackLayout] = {"o2": O2, "legacy": LEGACY}
LAYOUT_CHOICES = ("auto", "o2", "legacy")


def get_layout(name: str) -> TrackLayout:
    if name not in TRACK_LAYOUTS:
        raise DataError(f"unknown track layout {name!r}; accepted are {list(TRACK_LAYOUTS)}")
    return TRACK_LAYOUTS[name]


def detect_layout(columns, *, source: str = "table", forced: str = "auto") -> TrackLayout:
    """The layout whose columns the table has (`forced` = `o2`/`legacy` skips the guess).

    A table matching neither names the closest layout and its missing columns.
    """
    columns = set(map(str, columns))
    if forced not in LAYOUT_CHOICES:
        raise DataError(f"unknown track layout {forced!r}; accepted are {list(LAYOUT_CHOICES)}")
    candidates = [get_layout(forced)] if forced != "auto" else list(TRACK_LAYOUTS.values())
    missing = {lay.name: [c for c in lay.required if c not in columns] for lay in candidates}
    for lay in candidates:
        if not missing[lay.name]:
            return lay
    closest = min(candidates, key=lambda lay: len(missing[lay.name]) / len(lay.required))
    gone = missing[closest.name]
    what = "is not in" if forced != "auto" else "matches neither the o2 nor the legacy layout; closest is"
    shown = ", ".join(gone[:12]) + (f" and {len(gone) - 12} more" if len(gone) > 12 else "")
    raise DataError(f"{source}: {what} the {closest.name} layout, which needs columns missing here: {shown}")


__all__ = ["O2_BRANCHES", "O2_MC_BRANCHES", "O2_FILE_BRANCHES", "O2_LABEL", "O2_BAYES_COLUMNS", "O2_TOGGLES", "O2_VECTOR",
           "O2_VECTOR_COLUMNS", "VectorSlot", "its_cluster_sizes", "its_cluster_count", "o2_vector",
           "ITS_SIZE_COLUMNS", "ITS_MEAN_SIZE", "O2_EXTRA_INPUTS", "PLAUSIBLE_RANGES", "its_size_columns", "TrackLayout", "O2", "LEGACY",
           "TRACK_LAYOUTS", "LAYOUT_CHOICES", "get_layout", "detect_layout"]

"""Check a canonical track table and bring its missing values, species and implausible values to one form.

Real extractor output encodes a missing detector as NaN or as a sentinel (-999 by default); a
missing Bayesian PID as NaN, an all-zero or an all-0.25 row. The `has_*` flags are the
authority: where a flag says "absent", the group's values are ignored whatever they are; where it
says "present", the values must be numbers a detector can produce. Three policies decide the rest,
and every track they touch is counted where the user sees it (`TrackTable.summary`, `dropped`):

- **missing under a present flag** (NaN or a sentinel): an error, or the row dropped
  (`on_invalid`); groups with `absent_if_invalid` (the O2 layout's) treat the group as absent.
- **values no detector produces** (inf, or outside the plausible range of `pidx.data.layouts`,
  e.g. a negative momentum or a dE/dx of 1e30) under a present flag: an error, or the group
  treated as absent for that track (`implausible`); in an always-present group (kinematics) the
  track cannot be scored and is dropped (or, for prediction, kept and marked `unscored`).
- **other species** (muons, nuclei, fake tracks with PDG 0, anything not π/K/p/e): an error,
  dropped, or kept with label -1 as contamination of the selections (`other_species`).
"""

from __future__ import annotations

import dataclasses
import difflib

import numpy as np
import pandas as pd

from ..errors import DataError
from .schema import (
    BAYES_FLAG, BAYES_MISSING_ROWS, CLASS_PDG, DEFAULT_LAYOUT, DEFAULT_SENTINELS, LABEL_COLUMN, ORACLE_COLUMNS,
    VECTOR_ORACLE_COLUMNS, DetectorGroup, FeatureLayout, pdg_to_class,
)
from .species import species_counts
from .table import TrackTable

OTHER_SPECIES_POLICIES = ("contamination", "exclude", "error")
IMPLAUSIBLE_POLICIES = ("absent", "error")
ON_INVALID = ("error", "drop", "keep")

def _numeric_column(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    series = df[col]
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: column '{col}' is not numeric ({int(bad.sum())} rows, e.g. row {row}: "
            f"{series.iloc[row]!r}); expected numbers, with NaN or a sentinel for missing values")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_columns(df: pd.DataFrame, needed: list[str], source: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if not missing:
        return
    hints = []
    for c in missing:
        close = difflib.get_close_matches(c, [str(x) for x in df.columns], n=2, cutoff=0.6)
        hints.append(f"'{c}'" + (f" (did you mean {' or '.join(repr(x) for x in close)}?)" if close else ""))
    raise DataError(f"{source}: missing columns {', '.join(hints)}; the table has {len(df.columns)} "
                    f"columns: {', '.join(map(str, df.columns[:30]))}")


def _check_policies(on_invalid: str, implausible: str, other_species: str) -> None:
    for name, value, accepted in (("on_invalid", on_invalid, ON_INVALID), ("implausible", implausible,
                                  IMPLAUSIBLE_POLICIES), ("other_species", other_species, OTHER_SPECIES_POLICIES)):
        if value not in accepted:
            raise DataError(f"{name} must be one of {list(accepted)}, got {value!r}")


def validate_tracks(
    df: pd.DataFrame,
    *,
    source: str = "table",
    layout: FeatureLayout = DEFAULT_LAYOUT,
    passengers: tuple[DetectorGroup, ...] = (),
    require_label: bool = True,
    read_labels: bool = True,
    sentinels: tuple[float, ...] = DEFAULT_SENTINELS,
    other_species: str = "error",
    on_invalid: str = "error",
    implausible: str = "absent",
    ranges: dict[str, tuple[float, float]] | None = None,
    layout_name: str = "legacy",
    drop_unknown_pdg: bool = False,
) -> TrackTable:
    """Check a canonical table against the detector groups and canonicalise missing values.

    **Arguments:**

    - `df`: the table (extra columns are ignored, oracle columns kept).
    - `source`: file name used in every message.
    - `layout`: detector groups whose columns and flags are required.
    - `passengers`: further groups validated the same way and kept in the table but not
      model inputs (the O2 layout's Bayes and event columns, read by the baselines).
    - `require_label`: whether `mc_pdg` must be present (training, testing).
    - `read_labels`: `False` ignores `mc_pdg` even where present (prediction needs no truth).
    - `sentinels`: values that mean "missing" besides NaN.
    - `other_species`: tracks of species other than π, K, p, e: `error`, `exclude` (dropped,
      counted per species in `summary["other_species"]`) or `contamination` (kept with label -1).
    - `on_invalid`: rows whose flag says a detector is present but whose values are NaN or a
      sentinel (or whose momentum is missing): `error`, `drop` (counted) or `keep` (kept and
      marked in `unscored`, for prediction; groups with `absent_if_invalid` make the group
      absent for such a row instead, and count it).
    - `implausible`: values no detector produces under a present flag (inf, or outside
      `ranges`): `absent` (the group treated as absent for that track, counted per column in
      `summary["implausible"]`; in an always-present group the row is handled as `on_invalid`
      says) or `error`.
    - `ranges`: plausible `(low, high)` per column (default none: only inf is implausible).
    - `layout_name`: the file layout, recorded on the table.
    - `drop_unknown_pdg`: the former name of `other_species="exclude"`.
    """
    if drop_unknown_pdg and other_species == "error":
        other_species = "exclude"
    _check_policies(on_invalid, implausible, other_species)
    if len(df) == 0:
        raise DataError(f"{source}: the table is empty (no tracks)")
    # a passenger column the model reads (e.g. centrality as an extra input) is validated with the model's group
    used = set(layout.input_columns)
    passengers = tuple(dataclasses.replace(g, columns=tuple(c for c in g.columns if c not in used))
                       for g in passengers if any(c not in used for c in g.columns))
    checked = FeatureLayout(tuple(layout.groups) + passengers)
    _check_columns(df, list(checked.input_columns) + ([LABEL_COLUMN] if require_label else []), source)

    dropped: dict[str, int] = {}
    summary: dict = {}
    keep = np.ones(len(df), dtype=bool)
    labels = pdg = None
    if read_labels and LABEL_COLUMN in df.columns:
        labels, pdg = _labels(df, source, other_species, summary)
        if other_species == "exclude":
            keep &= labels >= 0
            if (labels < 0).any():
                dropped["other_species"] = int((labels < 0).sum())

    sentinel_arr = np.asarray(sentinels, dtype=np.float64)
    ranges = ranges or {}
    out: dict[str, np.ndarray] = {}
    invalid = np.zeros(len(df), dtype=bool)
    invalid_report: list[str] = []
    made_absent: dict[str, int] = {}
    implausible_counts: dict[str, int] = {}
    unscorable = np.zeros(len(df), dtype=bool)  # implausible values in an always-present group

    def is_missing(values):
        return np.isnan(values) | np.isin(values, sentinel_arr)

    for group in checked.groups:
        values = {c: _numeric_column(df, c, source) for c in group.columns}
        missing = {c: is_missing(v) for c, v in values.items()}
        is_passenger = group in passengers
        # values no detector produces, wherever a value is given (flags checked below)
        odd = {c: _implausible(v, ranges.get(c), missing[c]) for c, v in values.items()}
        if group.flag == BAYES_FLAG:
            present = _bayes_present(np.stack([values[c] for c in group.columns], axis=1), sentinel_arr)
            for c in group.columns:
                v = values[c]
                out_of_range = present & ((v < 0) | (v > 1))
                if out_of_range.any():
                    raise DataError(f"{source}: column '{c}' has {int(out_of_range.sum())} probabilities "
                                    "outside [0, 1]; missing Bayes rows may be NaN, all 0 or all 0.25")
        elif group.flag is not None:
            present = _flag_column(df, group.flag, source)
            wrong = {c: present & odd[c] for c in group.columns}
            _count_implausible(wrong, values, ranges, implausible, source, implausible_counts)
            if implausible == "absent":
                present = present & ~np.any(list(wrong.values()), axis=0)
            if group.absent_if_invalid:
                broken = present & np.any(list(missing.values()), axis=0)
                if broken.any():
                    made_absent[group.name] = int(broken.sum())
                    present = present & ~broken
        else:
            present = None
            if not is_passenger:
                _count_implausible(odd, values, ranges, implausible, source, implausible_counts)
                unscorable |= np.any(list(odd.values()), axis=0)
        for c in group.columns:
            v = values[c]
            if present is None:  # always-present group: NaN/sentinel is filled later
                bad = np.isinf(v) if is_passenger else np.zeros(len(v), bool)
                v = np.where(missing[c] | odd[c], np.nan, v)
            else:
                bad = present & missing[c]
                v = np.where(present, v, np.nan)
            if bad.any():
                invalid |= bad
                invalid_report.append(f"'{c}' ({int(bad.sum())} rows)")
            out[c] = v
        if group.flag is not None:
            out[group.flag] = present.astype(np.int8)

    for c in ("pt", "eta", "p"):
        if c in out:
            bad = ~np.isfinite(out[c]) & ~unscorable
            if bad.any():
                invalid |= bad
                invalid_report.append(f"'{c}' ({int(bad.sum())} rows missing; needed for the momentum)")
    if invalid_report and on_invalid == "error":
        what = ("NaN or sentinel values where the detector flag says the detector is present "
                "(or missing momentum) in columns " + ", ".join(invalid_report))
        raise DataError(f"{source}: {what}; fix the file or set data.on_invalid: drop to drop "
                        f"these {int(invalid.sum())} rows")
    unscored = None
    if on_invalid == "keep":
        unscored = invalid | unscorable
    else:
        if invalid.any():
            dropped["invalid_values"] = int((invalid & keep).sum())
        if unscorable.any():
            dropped["implausible_values"] = int((unscorable & ~invalid & keep).sum())
        keep &= ~invalid & ~unscorable

    for c in ORACLE_COLUMNS + VECTOR_ORACLE_COLUMNS:
        if c in df.columns:
            out[c] = _numeric_column(df, c, source)
    frame = pd.DataFrame(out)
    if made_absent:
        summary["made_absent"] = made_absent
    if implausible_counts:
        summary["implausible"] = {"policy": implausible, "columns": implausible_counts}
    table = TrackTable(frame, labels, source, dropped, layout_name, summary, pdg, unscored)
    if not keep.all():
        table = table.subset(np.flatnonzero(keep))
        if len(table) == 0:
            raise DataError(f"{source}: no tracks left after dropping {dropped}")
    return table


def _implausible(v: np.ndarray, bounds, missing: np.ndarray) -> np.ndarray:
    """Values given (not missing) that no detector produces: inf, or outside `bounds`."""
    odd = np.isinf(v)
    if bounds is not None:
        with np.errstate(invalid="ignore"):
            odd |= (v < bounds[0]) | (v > bounds[1])
    return odd & ~missing


def _count_implausible(wrong: dict, values: dict, ranges: dict, policy: str, source: str, counts: dict) -> None:
    for c, rows in wrong.items():
        n = int(rows.sum())
        if not n:
            continue
        if policy == "error":
            example = f"{float(values[c][rows][0]):.6g}"
            bounds = ranges.get(c)
            accepted = f"finite values in [{bounds[0]:g}, {bounds[1]:g}]" if bounds else "finite values"
            raise DataError(f"{source}: column '{c}' has {n} values no detector produces (e.g. {example}); "
                            f"accepted are {accepted}, NaN or a sentinel for a missing value; fix the file or set "
                            "data.implausible: absent to treat the group as absent for those tracks (counted)")
        counts[c] = counts.get(c, 0) + n


def _labels(df: pd.DataFrame, source: str, other_species: str, summary: dict) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (-1: another species) and the PDG codes; `other_species: error` refuses others."""
    pdg = _numeric_column(df, LABEL_COLUMN, source)
    bad = ~np.isfinite(pdg) | (pdg != np.round(pdg)) | (np.abs(pdg) > 2.0**62)
    if bad.any():
        raise DataError(f"{source}: column '{LABEL_COLUMN}' must hold integer PDG codes; "
                        f"{int(bad.sum())} rows are NaN, fractional or too large")
    codes = pdg.astype(np.int64)
    known = np.isin(np.abs(codes), CLASS_PDG)
    if other_species == "error" or known.all():
        return pdg_to_class(codes, source=source), codes
    labels = np.full(len(codes), -1, dtype=np.int32)
    labels[known] = pdg_to_class(codes[known], source=source)
    summary["other_species"] = {"policy": other_species, "tracks": species_counts(codes[~known])}
    return labels, codes


def _flag_column(df: pd.DataFrame, flag: str, source: str) -> np.ndarray:
    v = _numeric_column(df, flag, source)
    bad = ~np.isin(v, (0.0, 1.0))
    if bad.any():
        examples = sorted({repr(x) for x in v[bad][:5].tolist()})
        raise DataError(f"{source}: flag column '{flag}' must be 0 or 1; {int(bad.sum())} rows hold "
                        f"other values (e.g. {', '.join(examples)})")
    return v == 1.0


def _bayes_present(probs: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """A Bayes row is missing if any value is NaN/sentinel, or the row is all 0 or all 0.25."""
    missing = np.any(np.isnan(probs) | np.isin(probs, sentinels), axis=1)
    for fill in BAYES_MISSING_ROWS:
        missing |= np.all(probs == fill, axis=1)
    return ~missing


__all__ = ["TrackTable", "validate_tracks", "OTHER_SPECIES_POLICIES", "IMPLAUSIBLE_POLICIES", "ON_INVALID"]

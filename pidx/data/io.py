"""Read track tables (ROOT, CSV, Parquet) and bring them to one canonical form.

Real extractor output encodes a missing detector as NaN or as a sentinel (-999 by
default); a missing Bayesian PID as NaN, an all-zero or an all-0.25 row. The
`has_*` flags are the authority: where a flag says "absent", the group's values
are ignored whatever they are; where it says "present", the values must be finite
numbers (anything else is an error naming the column and how many rows, or, with
`on_invalid="drop"`, those rows are dropped and counted).

After `validate_tracks`, missing values are NaN everywhere, flags are 0/1 int8 and
the derived `bayes_available` flag exists, so two encodings of the same tracks give
identical tables. `load_tracks` is the whole path from a file to a `TrackTable`: read,
detect the layout (`pidx.data.layouts`), check ROOT branch types, apply the DPG selection,
build the canonical columns (O2: the 46-value model vector) and validate.
"""

from __future__ import annotations

import dataclasses
import difflib
import os

import numpy as np
import pandas as pd

from ..errors import DataError
from .files import DEFAULT_TREE, check_root_types, read_table, read_tracks_raw, write_table
from .layouts import O2_FILE_BRANCHES, TrackLayout, detect_layout
from .schema import (
    BAYES_COLUMNS, BAYES_FLAG, BAYES_MISSING_ROWS, DEFAULT_LAYOUT, DEFAULT_SENTINELS, LABEL_COLUMN,
    ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS, DetectorGroup, FeatureLayout, pdg_to_class,
)
from .selection import TrackSelection, apply_selection


@dataclasses.dataclass
class TrackTable:
    """A validated track table.

    **Arguments:**

    - `frame`: the layout's input columns (float64, NaN = missing), the group flags
      (int8, including `bayes_available`) and, where present, the oracle columns.
    - `labels`: class indices (0..3, pion/kaon/proton/electron) or `None` if unlabelled.
    - `source`: file name or description, used in messages.
    - `dropped`: rows dropped on request, by reason.
    - `layout`: the file layout (`o2` or `legacy`), see `pidx.data.layouts`.
    - `summary`: what loading did: the DPG selection's cut-flow, and per detector group the
      tracks whose flag said present but whose values were NaN/sentinel (made absent).
    """

    frame: pd.DataFrame
    labels: np.ndarray | None
    source: str
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    layout: str = "legacy"
    summary: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def momentum(self) -> np.ndarray:
        """Total momentum: the `p` column where the layout has one, else p = pT cosh η."""
        if "p" in self.frame:
            return self.frame["p"].to_numpy(np.float64)
        return self.frame["pt"].to_numpy() * np.cosh(self.frame["eta"].to_numpy())

    @property
    def oracle(self) -> np.ndarray | None:
        return self._columns_if_present(ORACLE_COLUMNS)

    @property
    def vector_oracle(self) -> np.ndarray | None:
        return self._columns_if_present(VECTOR_ORACLE_COLUMNS)

    def _columns_if_present(self, columns: tuple[str, ...]) -> np.ndarray | None:
        if all(c in self.frame for c in columns):
            return self.frame[list(columns)].to_numpy(np.float64)
        return None

    def subset(self, rows: np.ndarray) -> "TrackTable":
        return TrackTable(self.frame.iloc[rows].reset_index(drop=True),
                          None if self.labels is None else self.labels[rows], self.source, dict(self.dropped),
                          self.layout, dict(self.summary))


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


def validate_tracks(
    df: pd.DataFrame,
    *,
    source: str = "table",
    layout: FeatureLayout = DEFAULT_LAYOUT,
    passengers: tuple[DetectorGroup, ...] = (),
    require_label: bool = True,
    sentinels: tuple[float, ...] = DEFAULT_SENTINELS,
    drop_unknown_pdg: bool = False,
    on_invalid: str = "error",
    layout_name: str = "legacy",
) -> TrackTable:
    """Check a canonical table against the detector groups and canonicalise missing values.

    **Arguments:**

    - `df`: the table (extra columns are ignored, oracle columns kept).
    - `source`: file name used in every message.
    - `layout`: detector groups whose columns and flags are required.
    - `passengers`: further groups validated the same way and kept in the table but not
      model inputs (the O2 layout's Bayes and event columns, read by the baselines).
    - `require_label`: whether `mc_pdg` must be present (training, testing).
    - `sentinels`: values that mean "missing" besides NaN.
    - `drop_unknown_pdg`: drop rows with PDG codes other than π, K, p, e (counted in
      `dropped`) instead of raising.
    - `on_invalid`: `"error"` (default) or `"drop"` for rows whose flag says a
      detector is present but whose values are NaN, inf or a sentinel (groups with
      `absent_if_invalid` make the group absent for such a row instead, and count it).
    - `layout_name`: the file layout, recorded on the table.
    """
    if on_invalid not in ("error", "drop"):
        raise DataError(f"on_invalid must be 'error' or 'drop', got {on_invalid!r}")
    if len(df) == 0:
        raise DataError(f"{source}: the table is empty (no tracks)")
    # a passenger column the model reads (e.g. centrality as an extra input) is validated with the model's group
    used = set(layout.input_columns)
    passengers = tuple(dataclasses.replace(g, columns=tuple(c for c in g.columns if c not in used))
                       for g in passengers if any(c not in used for c in g.columns))
    checked = FeatureLayout(tuple(layout.groups) + passengers)
    _check_columns(df, list(checked.input_columns) + ([LABEL_COLUMN] if require_label else []), source)

    dropped: dict[str, int] = {}
    keep = np.ones(len(df), dtype=bool)
    labels = None
    if LABEL_COLUMN in df.columns:
        labels, keep = _labels(df, source, drop_unknown_pdg, dropped)

    sentinel_arr = np.asarray(sentinels, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    invalid = np.zeros(len(df), dtype=bool)
    invalid_report: list[str] = []
    made_absent: dict[str, int] = {}

    def is_missing(values):
        return np.isnan(values) | np.isin(values, sentinel_arr)

    for group in checked.groups:
        values = {c: _numeric_column(df, c, source) for c in group.columns}
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
            if group.absent_if_invalid:
                broken = present & np.any([is_missing(v) | np.isinf(v) for v in values.values()], axis=0)
                if broken.any():
                    made_absent[group.name] = int(broken.sum())
                    present = present & ~broken
        else:
            present = None
        for c in group.columns:
            v = values[c]
            if present is None:  # always-present group: NaN/sentinel is filled later, inf is not
                bad = np.isinf(v)
                v = np.where(is_missing(v), np.nan, v)
            else:
                bad = present & (is_missing(v) | np.isinf(v))
                v = np.where(present, v, np.nan)
            if bad.any():
                invalid |= bad
                invalid_report.append(f"'{c}' ({int(bad.sum())} rows)")
            out[c] = v
        if group.flag is not None:
            out[group.flag] = present.astype(np.int8)

    for c in ("pt", "eta", "p"):
        if c in out:
            bad = ~np.isfinite(out[c])
            if bad.any():
                invalid |= bad
                invalid_report.append(f"'{c}' ({int(bad.sum())} rows missing; needed for the momentum)")
    if invalid_report:
        what = ("NaN, inf or sentinel values where the detector flag says the detector is present "
                "(or inf / missing momentum) in columns " + ", ".join(invalid_report))
        if on_invalid == "error":
            raise DataError(f"{source}: {what}; fix the file or set data.on_invalid: drop to drop "
                            f"these {int(invalid.sum())} rows")
        dropped["invalid_values"] = int((invalid & keep).sum())
        keep &= ~invalid

    for c in ORACLE_COLUMNS + VECTOR_ORACLE_COLUMNS:
        if c in df.columns:
            out[c] = _numeric_column(df, c, source)
    frame = pd.DataFrame(out)
    if not keep.all():
        frame = frame.loc[keep].reset_index(drop=True)
        labels = labels[keep] if labels is not None else None
        if len(frame) == 0:
            raise DataError(f"{source}: no tracks left after dropping {dropped}")
    summary = {"made_absent": made_absent} if made_absent else {}
    return TrackTable(frame, labels, source, dropped, layout_name, summary)


def _labels(df: pd.DataFrame, source: str, drop_unknown_pdg: bool, dropped: dict) -> tuple[np.ndarray, np.ndarray]:
    pdg = _numeric_column(df, LABEL_COLUMN, source)
    if not np.all(np.isfinite(pdg)) or np.any(pdg != np.round(pdg)):
        bad = ~np.isfinite(pdg) | (pdg != np.round(pdg))
        raise DataError(f"{source}: column '{LABEL_COLUMN}' must hold integer PDG codes; "
                        f"{int(bad.sum())} rows are NaN or fractional")
    keep = np.ones(len(df), dtype=bool)
    if drop_unknown_pdg:
        known = np.isin(np.abs(pdg), [211, 321, 2212, 11])
        if (~known).any():
            dropped["unknown_pdg"] = int((~known).sum())
            keep &= known
    labels = np.full(len(df), -1, dtype=np.int32)
    labels[keep] = pdg_to_class(pdg[keep].astype(np.int64), source=source)
    return labels, keep


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


def load_tracks(
    source: str | os.PathLike,
    *,
    track_layout: str = "auto",
    tree: str = DEFAULT_TREE,
    selection: TrackSelection | None = None,
    disabled_groups: tuple[str, ...] = (),
    layout: FeatureLayout | None = None,
    extra_groups: tuple[DetectorGroup, ...] = (),
    **kwargs,
) -> TrackTable:
    """A file, directory or glob of ROOT/CSV/Parquet tracks → a validated `TrackTable`.

    **Arguments:**

    - `source`: the track file(s).
    - `track_layout`: `auto` (detected from the columns), `o2` or `legacy`.
    - `tree`: the TTree of ROOT files.
    - `selection`: DPG cuts applied before anything else (cut-flow in `summary`).
    - `disabled_groups`: O2 groups switched off as with pidOnnxInference's `use*` options.
    - `layout`: detector groups the model sees (default: the file layout's own plus `extra_groups`).
    - `extra_groups`: user detector groups added before kinematics when `layout` is not given.
    - `kwargs`: passed to `validate_tracks` (`require_label`, `sentinels`, ...).
    """
    raw, dtypes, what = read_tracks_raw(source, tree=tree)
    return tracks_from_frame(raw, source=what, track_layout=track_layout, dtypes=dtypes, selection=selection,
                             disabled_groups=disabled_groups, layout=layout, extra_groups=extra_groups, **kwargs)


def tracks_from_frame(
    raw: pd.DataFrame,
    *,
    source: str = "table",
    track_layout: str | TrackLayout = "auto",
    dtypes: dict | None = None,
    selection: TrackSelection | None = None,
    disabled_groups: tuple[str, ...] = (),
    layout: FeatureLayout | None = None,
    extra_groups: tuple[DetectorGroup, ...] = (),
    **kwargs,
) -> TrackTable:
    """`load_tracks` for a table already in memory (`dtypes`: ROOT branch types to check)."""
    lay = track_layout if isinstance(track_layout, TrackLayout) else detect_layout(raw.columns, source=source,
                                                                                    forced=track_layout)
    if dtypes is not None and lay.name == "o2":
        check_root_types(dtypes, O2_FILE_BRANCHES, source)
    if lay.name == "o2":  # raw flags must be 0/1 before they decide the canonical columns
        for flag in (b for b, ctype in lay.required.items() if ctype == "bool"):
            _flag_column(raw, flag, source)
    layout = layout or lay.features.with_groups(extra_groups)
    if "centrality" in disabled_groups and "centFT0C" in layout.input_columns:
        raise DataError(f"{source}: the model reads the centrality (centFT0C) as an input, so the centrality "
                        "group cannot be disabled for it")
    cutflow = {}
    if selection is not None and selection.active:
        raw, cutflow = apply_selection(raw, selection, lay, source)
    table = validate_tracks(lay.canonical(raw, tuple(disabled_groups)), source=source,
                            layout=layout, passengers=lay.passengers, layout_name=lay.name, **kwargs)
    if cutflow:
        table.summary["selection"] = cutflow
    return table


def encode_missing(df: pd.DataFrame, style: str = "sentinel", *, sentinel: float = -999.0,
                   bayes_fill: float = 0.0) -> pd.DataFrame:
    """Re-encode missing values the way real extractor output does.

    **Arguments:**

    - `df`: a table with NaN for missing values (e.g. from `simulate`).
    - `style`: `"nan"` (unchanged) or `"sentinel"`: missing TPC/TOF values become
      `sentinel`, missing Bayes rows become all `bayes_fill` (0 or 0.25).
    """
    if style == "nan":
        return df.copy()
    if style != "sentinel":
        raise DataError(f"missing-value style must be 'nan' or 'sentinel', got {style!r}")
    out = df.copy()
    for group in DEFAULT_LAYOUT.groups:
        for c in group.columns:
            if group.flag == BAYES_FLAG:
                missing = out[list(BAYES_COLUMNS)].isna().any(axis=1)
                out.loc[missing, c] = bayes_fill
            elif group.flag is not None:
                out[c] = out[c].fillna(sentinel)
    return out


__all__ = ["TrackTable", "read_table", "validate_tracks", "load_tracks", "tracks_from_frame", "encode_missing",
           "write_table"]

"""Read track tables (ROOT, CSV, Parquet) and bring them to one canonical form.

After `validate_tracks` (`pidx.data.validate`: flags, missing values, values no detector
produces, other species), missing values are NaN everywhere, flags are 0/1 int8 and the derived
`bayes_available` flag exists, so two encodings of the same tracks give identical tables.
`load_tracks` is the whole path from a file to a `TrackTable`: read, detect the layout
(`pidx.data.layouts`), check ROOT branch types, apply the DPG selection, build the canonical
columns (O2: the 46-value model vector) and validate.
"""

from __future__ import annotations

import os

import pandas as pd

from ..errors import DataError
from .files import DEFAULT_TREE, check_root_types, read_table, read_tracks_raw, write_table
from .layouts import O2_FILE_BRANCHES, PLAUSIBLE_RANGES, TrackLayout, detect_layout
from .schema import BAYES_COLUMNS, BAYES_FLAG, DEFAULT_LAYOUT, DetectorGroup, FeatureLayout
from .selection import TrackSelection, apply_selection
from .table import TrackTable
from .validate import _flag_column, validate_tracks


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
    raw = read_tracks_raw(source, tree=tree)
    table = tracks_from_frame(raw.frame, source=raw.source, track_layout=track_layout, dtypes=raw.dtypes,
                              selection=selection, disabled_groups=disabled_groups, layout=layout,
                              extra_groups=extra_groups, **kwargs)
    if len(raw.trees) > 1:  # several trees (DF_* directories, a glob): how many tracks came from each
        table.summary["trees"] = raw.trees
    return table


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
    kwargs.setdefault("ranges", PLAUSIBLE_RANGES)
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

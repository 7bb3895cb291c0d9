"""The unlabelled target sample: collision data (or any sample without labels) read beside the labelled
training data, in the same layout, validation rules, momentum range and preprocessing, its labels
ignored even where the file has them (domain adaptation and MC-vs-data comparisons never read them)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from .arrays import TrackArrays, arrays_from_table
from .io import TrackTable, load_tracks


def load_target(source: str, *, tree: str, track_layout: str, rules: dict, in_range, preprocessor,
                what: str = "target") -> tuple[TrackTable, TrackArrays]:
    """Read `source` as the training data was read and preprocess it with the training statistics.

    **Arguments:**

    - `source`: a ROOT/CSV/Parquet file, a directory or a glob of them.
    - `tree`: the TTree of ROOT files.
    - `track_layout`: the training data's layout (`o2` or `legacy`): the target must be in it.
    - `rules`: the data module's reading rules (sentinels, validation, selection, layout).
    - `in_range`: `table -> bool[N]`, the training data's momentum range.
    - `preprocessor`: the statistics fitted on the training split.

    **Returns:** the selected table (its labels dropped) and its arrays (labels -1).
    """
    rules = {**rules, "other_species": "contamination"}  # labels play no part: no species is refused or dropped
    try:
        table = load_tracks(source, tree=tree, track_layout=track_layout, **rules)
    except DataError:
        own = _own_layout(source, tree, rules)  # a file in the other layout says so, not which columns it lacks
        if own is not None and own != track_layout:
            raise DataError(f"{source}: the {what} data is in the {own} layout, the training data in the "
                            f"{track_layout} layout; give a {what} file in the {track_layout} layout") from None
        raise
    rows = np.flatnonzero(in_range(table))
    if len(rows) == 0:
        raise DataError(f"{table.source}: no {what} track lies in the training data's momentum range")
    table = dataclasses.replace(table.subset(rows), labels=None, pdg=None)
    arrays = arrays_from_table(table, preprocessor)
    return table, arrays


def _own_layout(source, tree, rules) -> str | None:
    """The layout `source` is in when read on its own terms (`None` if it cannot be read at all)."""
    try:
        return load_tracks(source, tree=tree, track_layout="auto",
                           **{**rules, "layout": None, "extra_groups": (), "selection": None}).layout
    except DataError:
        return None


def target_summary(table: TrackTable, layout) -> dict:
    """What was read of the target sample: its source, tracks, detector availability and drops."""
    return {"source": table.source, "n_tracks": len(table), "layout": table.layout,
            "group_availability": {g.name: float(table.frame[g.flag].mean()) for g in layout.flagged_groups},
            **({"dropped": dict(table.dropped)} if table.dropped else {})}


__all__ = ["load_target", "target_summary"]

"""DPG track selections, applied to the raw table before the momentum range and the split.

The O2 extractor writes every global track (its cuts are off by default); analyses apply the
DPG selections downstream, and they change the sample a lot. Each cut is optional; the
tracks each one removes (in order, a cut-flow) are counted for the log and metrics.json.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..errors import DataError
from .layouts import TrackLayout, its_cluster_count


@dataclasses.dataclass(frozen=True)
class TrackSelection:
    """Cuts on the raw track table; `None` switches a cut off.

    **Arguments:**

    - `vz_max`: |vz| < value (cm; the event vertex).
    - `eta_max`: |η| < value.
    - `dca_xy_max`, `dca_z_max`: |DCAxy|, |DCAz| < value (cm).
    - `min_tpc_clusters`: tpcNClsFound ≥ value.
    - `min_its_clusters`: layers with an ITS cluster ≥ value.
    - `primaries_only`: keep MC physical primaries (`mcIsPhysicalPrimary`) only.
    """

    vz_max: float | None = None
    eta_max: float | None = None
    dca_xy_max: float | None = None
    dca_z_max: float | None = None
    min_tpc_clusters: int | None = None
    min_its_clusters: int | None = None
    primaries_only: bool = False

    @property
    def active(self) -> bool:
        return self.primaries_only or any(v is not None for k, v in dataclasses.asdict(self).items()
                                          if k != "primaries_only")


# cut → (column per layout, how the column is compared)
_COLUMNS = {
    "vz_max": {"o2": "vz"}, "eta_max": {"o2": "eta", "legacy": "eta"},
    "dca_xy_max": {"o2": "dcaXY", "legacy": "dca_xy"}, "dca_z_max": {"o2": "dcaZ", "legacy": "dca_z"},
    "min_tpc_clusters": {"o2": "tpcNClsFound"}, "min_its_clusters": {"o2": "itsClusterSizes"},
    "primaries_only": {"o2": "mcIsPhysicalPrimary"},
}


def apply_selection(df: pd.DataFrame, selection: TrackSelection, layout: TrackLayout,
                    source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """(selected rows, tracks removed by each active cut in order)."""
    keep = np.ones(len(df), bool)
    cutflow: dict[str, int] = {}
    for name, value in dataclasses.asdict(selection).items():
        if value is None or value is False:
            continue
        column = _COLUMNS[name].get(layout.name)
        if column is None or column not in df:
            need = column or "/".join(sorted(set(_COLUMNS[name].values())))
            raise DataError(f"{source}: the selection {name} needs column '{need}', which this {layout.name}-layout "
                            "table does not have")
        v = df[column].to_numpy()
        if name == "min_its_clusters":
            passed = its_cluster_count(v) >= value
        elif name == "min_tpc_clusters":
            passed = v >= value
        elif name == "primaries_only":
            passed = v != 0
        else:
            passed = np.abs(v.astype(np.float64)) < value  # NaN fails the cut
        cutflow[name] = int((keep & ~passed).sum())
        keep &= passed
    if not keep.any():
        raise DataError(f"{source}: no tracks pass the selection (removed per cut: {cutflow})")
    return (df if keep.all() else df.loc[keep].reset_index(drop=True)), cutflow


__all__ = ["TrackSelection", "apply_selection"]

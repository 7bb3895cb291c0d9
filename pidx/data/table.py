"""`TrackTable`: a validated track table, as every reader, the data module and the baselines see it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .schema import ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS


@dataclasses.dataclass
class TrackTable:
    """A validated track table.

    **Arguments:**

    - `frame`: the layout's input columns (float64, NaN = missing), the group flags
      (int8, including `bayes_available`) and, where present, the oracle columns.
    - `labels`: class indices (0..3, pion/kaon/proton/electron; -1 for a track of another
      species kept as contamination) or `None` if unlabelled.
    - `source`: file name or description, used in messages.
    - `dropped`: rows dropped on request, by reason.
    - `layout`: the file layout (`o2` or `legacy`), see `pidx.data.layouts`.
    - `summary`: what loading did: the DPG selection's cut-flow, per detector group the tracks
      whose flag said present but whose values were NaN/sentinel (made absent), per column the
      values no detector produces, the other species found.
    - `pdg`: the MC truth PDG codes where labels were read (names the other species).
    - `unscored`: rows kept although no model can score them (prediction only), or None.
    """

    frame: pd.DataFrame
    labels: np.ndarray | None
    source: str
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    layout: str = "legacy"
    summary: dict = dataclasses.field(default_factory=dict)
    pdg: np.ndarray | None = None
    unscored: np.ndarray | None = None

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
        def take(a):
            return None if a is None else a[rows]

        return TrackTable(self.frame.iloc[rows].reset_index(drop=True), take(self.labels), self.source,
                          dict(self.dropped), self.layout, dict(self.summary), take(self.pdg), take(self.unscored))

    @staticmethod
    def concat(tables: list["TrackTable"]) -> "TrackTable":
        """Rows of `tables` one after the other (labels, PDG codes and flags alike)."""
        first = tables[0]

        def join(name):
            parts = [getattr(t, name) for t in tables]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        return TrackTable(pd.concat([t.frame for t in tables], ignore_index=True), join("labels"), first.source,
                          dict(first.dropped), first.layout, dict(first.summary), join("pdg"), join("unscored"))


__all__ = ["TrackTable"]

"""Turn a validated track table into model inputs: features and detector masks.

Statistics (medians, robust scales) are fitted on the train split only and travel
with every checkpoint, so `test`, `predict` and the ONNX export apply exactly the
same transformation. After `transform`, no NaN reaches a model:

- a flagged group that is absent gets its `missing_fill` (0 = the train median after
  scaling; the Bayes group gets the token -0.25), and its mask entry is False;
- a missing kinematic value gets the train median;
- scaled values are `z = (x − median) / scale` with `scale` = IQR / 1.349 (robust to the
  wild tpc_signal outliers of real data); beyond ±`knee` they grow logarithmically,
  `sign(z)·(knee + log(1 + |z| − knee))`, and are then clipped to ±`clip`.

Why the logarithmic tail: a hard clip at a few robust sigmas erases evidence. The DCA of a
secondary track lies hundreds of primary-resolution widths from zero, and how far it lies
tells the species apart (its decay length); clipped, every secondary looks alike. The
logarithm keeps the order and the distances of the tail while bounding what a network sees
(a DCA of 1000 robust sigmas reads about 12 with `knee` = 5). `knee=None` is the hard clip
alone, as checkpoints written before it have.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from .io import TrackTable
from .schema import FeatureLayout

_IQR_TO_SIGMA = 1.349
# The defaults of every layer (DataModule, recipe): a robust-scaled value of 5 is far in a Gaussian
# tail, and 20 bounds what a network sees once the logarithm has compressed the rest.
DEFAULT_CLIP = 20.0
DEFAULT_KNEE = 5.0


def squash(z: np.ndarray, knee: float | None) -> np.ndarray:
    """`z` inside ±knee, `sign(z)·(knee + log(1 + |z| − knee))` beyond: continuous, with slope 1 at
    the knee, strictly increasing (`knee=None`: `z` unchanged)."""
    if knee is None:
        return z
    a = np.abs(z)
    return np.sign(z) * (np.minimum(a, knee) + np.log1p(np.maximum(a - knee, 0.0)))


@dataclasses.dataclass
class Preprocessor:
    """Fitted preprocessing for one feature layout.

    **Arguments:**

    - `layout`: the detector groups and their columns.
    - `median`, `scale`: per scaled column, fitted on present train values.
    - `clip`: scaled values are clipped to [-clip, clip] (after the logarithmic tail).
    - `track_layout`: the file layout the statistics were fitted on (`o2` or `legacy`):
      new files are read in it, and exports take its model inputs.
    - `knee`: beyond ±knee scaled values grow logarithmically (`None`: linear up to the clip).
    """

    layout: FeatureLayout
    median: dict[str, float]
    scale: dict[str, float]
    clip: float = DEFAULT_CLIP
    track_layout: str = "legacy"
    knee: float | None = None

    @classmethod
    def fit(cls, table: TrackTable, layout: FeatureLayout, *, clip: float = DEFAULT_CLIP,
            track_layout: str = "legacy", knee: float | None = DEFAULT_KNEE) -> "Preprocessor":
        """Fit medians and robust scales on `table` (the train split)."""
        if clip <= 0:
            raise DataError(f"preprocess clip must be > 0, got {clip}")
        if knee is not None and not 0 < knee <= clip:
            raise DataError(f"preprocess knee must be in (0, clip = {clip}] or None, got {knee}")
        median, scale = {}, {}
        frame = table.frame
        for group in layout.groups:
            if not group.scale:
                continue
            present = np.ones(len(frame), bool) if group.flag is None else frame[group.flag].to_numpy() == 1
            for c in group.columns:
                v = frame[c].to_numpy(np.float64)[present]
                v = v[np.isfinite(v)]
                if len(v) == 0:  # group never present in train: identity transform, masked anyway
                    median[c], scale[c] = 0.0, 1.0
                    continue
                q25, q50, q75 = np.percentile(v, [25, 50, 75])
                s = (q75 - q25) / _IQR_TO_SIGMA
                if not s > 0:
                    s = float(np.std(v))
                median[c], scale[c] = float(q50), float(s) if s > 0 else 1.0
        return cls(layout, median, scale, clip, track_layout, knee)

    def transform(self, table: TrackTable) -> tuple[np.ndarray, np.ndarray]:
        """Features `f32[N, F]` and group mask `bool[N, G]` for a validated table."""
        frame, n = table.frame, len(table)
        feats = np.empty((n, self.layout.num_features), dtype=np.float32)
        mask = np.ones((n, self.layout.num_groups), dtype=bool)
        col = 0
        for g_idx, group in enumerate(self.layout.groups):
            missing_col = [c for c in group.columns + ((group.flag,) if group.flag else ()) if c not in frame]
            if missing_col:
                raise DataError(f"{table.source}: columns {missing_col} of detector group "
                                f"'{group.name}' are not in the table")
            present = np.ones(n, bool) if group.flag is None else frame[group.flag].to_numpy() == 1
            mask[:, g_idx] = present
            for c in group.columns:
                v = frame[c].to_numpy(np.float64)
                if group.scale:
                    v = np.where(np.isfinite(v), v, self.median[c])
                    v = np.clip(squash((v - self.median[c]) / self.scale[c], self.knee), -self.clip, self.clip)
                feats[:, col] = np.where(present, v, group.missing_fill)
                col += 1
        for g_idx, group in enumerate(self.layout.groups):
            if group.flag is not None:
                feats[:, col] = mask[:, g_idx]
                col += 1
        if not np.all(np.isfinite(feats)):  # a guarantee, not a hope: fail loudly if broken
            bad = np.flatnonzero(~np.all(np.isfinite(feats), axis=0))
            names = [self.layout.feature_names[i] for i in bad]
            raise DataError(f"{table.source}: non-finite features after preprocessing in {names}")
        return feats, mask

    def to_dict(self) -> dict:
        return {"layout": self.layout.to_dict(), "median": self.median, "scale": self.scale,
                "clip": self.clip, "track_layout": self.track_layout, "knee": self.knee}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessor":
        # checkpoints written before the O2 layout existed are legacy-layout ones, before the knee hard-clipped
        return cls(FeatureLayout.from_dict(d["layout"]), dict(d["median"]), dict(d["scale"]), d["clip"],
                   d.get("track_layout", "legacy"), d.get("knee"))


__all__ = ["Preprocessor", "squash"]

"""The streamed data's cache on disk, read back split by split and chunk by chunk (`StreamCache`,
`ChunkedTracks`). `pidx.data.stream_build` builds it; `pidx.data.stream` says how."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .arrays import TrackArrays
from .io import TrackTable
from .preprocess import Preprocessor

STREAM_CACHE_VERSION = 2  # 2: one segment per split and file (several processes build one cache)
ARRAYS = {"features": np.float32, "mask": np.bool_, "label": np.int32, "p": np.float32}
LABEL, POSITION = "__label__", "__position__"


class ChunkedTracks:
    """One split of the stream cache: `num_tracks` preprocessed tracks on disk, read `chunk_tracks`
    at a time as `TrackArrays` of host arrays (`read`, `chunks`). `label` and `p` (4 bytes a track
    each) are held in memory once read; the features are not (`features` raises). `seed` (the data's
    split seed) seeds the order in which training visits the chunks, so that an ensemble member and
    a single run with the member's seed see the chunks in the same order.

    The split's tracks lie in `segments`, `(file name stem, tracks)` one after the other (default: one
    segment named after the split); a chunk may span several."""

    def __init__(self, directory: Path, split: str, num_tracks: int, num_features: int, num_groups: int,
                 chunk_tracks: int, seed: int = 0, segments: list[tuple[str, int]] | None = None):
        if chunk_tracks < 1:
            raise DataError(f"chunk_tracks must be >= 1, got {chunk_tracks}")
        self.directory, self.split, self.num_tracks = Path(directory), split, int(num_tracks)
        self.num_features, self.num_groups, self.chunk_tracks = num_features, num_groups, int(chunk_tracks)
        self.seed = int(seed)
        self.segments = [(split, self.num_tracks)] if segments is None else [(s, int(n)) for s, n in segments]
        if sum(n for _, n in self.segments) != self.num_tracks:
            raise DataError(f"{self.directory}: the {split} segments hold {sum(n for _, n in self.segments)} tracks, "
                            f"not {self.num_tracks}; delete the directory to rebuild the cache")
        self._whole: dict[str, np.ndarray] = {}

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """`(start, stop)` row ranges of the chunks, in file order."""
        return [(s, min(s + self.chunk_tracks, self.num_tracks)) for s in range(0, self.num_tracks, self.chunk_tracks)]

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        width = {"features": self.num_features, "mask": self.num_groups}.get(name, 1)
        dtype = np.dtype(ARRAYS[name])
        parts, first = [], 0
        for stem, n in self.segments:
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:
                values = np.fromfile(self.directory / f"{stem}.{name}", dtype=dtype, count=(hi - lo) * width,
                                     offset=(lo - first) * width * dtype.itemsize)
                if len(values) != (hi - lo) * width:
                    raise DataError(f"{self.directory}: {stem}.{name} is shorter than its metadata says; delete "
                                    "the directory to rebuild the cache")
                parts.append(values)
            first += n
        values = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, dtype)
        return values.reshape(-1, width) if name in ("features", "mask") else values

    def read(self, start: int, stop: int) -> TrackArrays:
        """Tracks `start:stop` as host arrays."""
        return TrackArrays(self._read("features", start, stop), self._read("mask", start, stop),
                           self._read("label", start, stop), self._read("p", start, stop))

    def _held(self, name: str) -> np.ndarray:
        if name not in self._whole:
            self._whole[name] = self._read(name, 0, self.num_tracks)
        return self._whole[name]

    @property
    def label(self) -> np.ndarray:
        return self._held("label")

    @property
    def p(self) -> np.ndarray:
        return self._held("p")

    @property
    def features(self):
        raise DataError(f"the {self.split} split is streamed from {self.directory}: read it chunk by chunk "
                        "(ChunkedTracks.read / chunks), not as one array")

    group_mask = features


class StreamCache:
    """A built cache directory: its metadata, splits, samples and preprocessing."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.meta = json.loads((self.directory / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.directory}: not a complete stream cache ({exc}); delete it to rebuild") from None
        self.preprocessor = Preprocessor.from_dict(self.meta["preprocessor"])

    def split(self, name: str, chunk_tracks: int, seed: int = 0) -> ChunkedTracks:
        lay = self.preprocessor.layout
        split = self.meta["splits"][name]
        return ChunkedTracks(self.directory, name, split["num_tracks"], lay.num_features, lay.num_groups,
                             chunk_tracks, seed, [(f"{name}.{j}", n) for j, n in split["segments"]])

    def sample(self, name: str) -> tuple[TrackTable, np.ndarray]:
        """The split's seeded sample as a validated table, and its rows' positions in the split."""
        table, positions = _sample_table(self.directory, name, self.meta, self.meta["source"])
        n = self.meta["splits"][name]["num_tracks"]
        table.source = f"{table.source} (seeded sample of {len(table):,} of {n:,} {name} tracks)"
        table.summary = dict(self.meta["summary"])
        return table, positions


def _sample_table(directory: Path, name: str, meta: dict, source: str) -> tuple[TrackTable, np.ndarray]:
    frame = pd.read_parquet(directory / f"{name}.sample.parquet")
    labels, positions = frame.pop(LABEL).to_numpy(np.int32), frame.pop(POSITION).to_numpy(np.int64)
    return TrackTable(frame, labels, source, dict(meta["dropped"]), meta["track_layout"], {}), positions


__all__ = ["STREAM_CACHE_VERSION", "ChunkedTracks", "StreamCache"]

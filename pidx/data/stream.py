"""Data bigger than memory: track files streamed in pieces into a preprocessed cache on disk.

When the selected data would not fit in the data module's memory budget,
`pidx.data.stream_build.build_stream_cache` reads the files piece by piece (Parquet row groups,
ROOT baskets through `uproot.iterate`, CSV chunks), as float32, in two passes:

1. **Pass 1.** Every piece is validated exactly as `load_tracks` validates a whole file (layout,
   DPG selection, flags), cut to the momentum range and split into train/validation/test by a
   seeded hash of the track's own values (`split_codes`). The split is therefore the same however
   the files are cut into pieces, chunked or ordered.
   - Per split, the pass keeps the `sample_tracks` tracks of smallest second hash: a seeded sample
     that is equally independent of the chunking.
   - The train sample fits the preprocessing statistics.
   - The three samples are the tables that the tree baselines and the report use.
2. **Pass 2.** Every piece is preprocessed with those statistics. Its float32 features, detector
   mask, labels and momenta are appended to one binary file per split, file and array.

Under `jax.distributed` each process reads only its share of the files (`pidx.data.group`) in both
passes; process 0 merges the shares' samples and counts. The cache is the same, file for file, as
one process would build.

The cache is `$PIDX_CACHE_DIR/stream-<key>`, keyed by the files (path, size, modification time) and
every setting that changes its content. It is built in a temporary directory that is renamed into
place, so a crash never leaves half a cache. `ChunkedTracks` reads a split back chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .files import SUFFIXES, open_root_trees, resolve_trees, track_file_kind

SPLITS = ("train", "val", "test")
BYTES_PER_VALUE = 24  # in-memory path: raw float32 + canonical float64 frame + split copies + model inputs
PIECE_TRACKS = 100_000  # rows read, validated and preprocessed at a time
_HASH_M1, _HASH_M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NAN_BITS = np.uint64(0x7FC00000)


# ---------------------------------------------------------------- sizes and pieces
def estimated_memory(files: list[Path], *, tree: str) -> int:
    """Bytes the in-memory path would need for `files`: values (rows × columns from the file metadata;
    CSV: twice the file size) times `BYTES_PER_VALUE`."""
    total = 0
    for path in files:
        kind = SUFFIXES.get(path.suffix.lower())
        try:
            if kind == "parquet":
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(path).metadata
                total += meta.num_rows * meta.num_columns * BYTES_PER_VALUE
            elif kind == "root":
                import uproot

                with uproot.open(path) as f:
                    for name in resolve_trees(f, tree, path):
                        t = f[name]
                        total += t.num_entries * len(t.keys()) * BYTES_PER_VALUE
            else:
                total += 2 * path.stat().st_size * BYTES_PER_VALUE // 8
        except Exception:  # an unreadable file: the reader gives the error that names it
            continue
    return total


def count_rows(files: list[Path], *, tree: str) -> int | None:
    """Tracks in `files` from their metadata (ROOT entries, Parquet rows); None when a CSV file is
    among them (its rows are known only once read)."""
    total = 0
    for path in files:
        kind = track_file_kind(path)
        if kind == "csv":
            return None
        if kind == "parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
        else:
            with open_root_trees(path, tree) as trees:
                total += sum(t.num_entries for _, t in trees)
    return total


def iter_pieces(path: Path, *, tree: str, rows: int, as_float32: bool = True
                ) -> Iterator[tuple[pd.DataFrame, dict | None]]:
    """`(frame, ROOT branch dtypes or None)` pieces of about `rows` tracks, in the file's order (a ROOT
    file's trees one after the other), floating columns as float32 unless `as_float32` is False."""
    kind = track_file_kind(path)
    _float32 = _to_float32 if as_float32 else (lambda frame: frame)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield _float32(batch.to_pandas()), None
        elif kind == "csv":
            for frame in pd.read_csv(path, chunksize=rows):
                yield _float32(frame), None
        else:
            with open_root_trees(path, tree) as trees:  # time-frame directories one after the other
                for _, t in trees:
                    for arrays in t.iterate(step_size=rows, library="np"):
                        dtypes = {k: v.dtype for k, v in arrays.items()}
                        yield _float32(pd.DataFrame(arrays)), dtypes
    except DataError:
        raise
    except Exception as exc:  # pyarrow/pandas/uproot raise many types; the user needs the file name
        raise DataError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from None


def _to_float32(frame: pd.DataFrame) -> pd.DataFrame:
    wide = [c for c in frame.columns if frame[c].dtype == np.float64]
    return frame.astype({c: np.float32 for c in wide}) if wide else frame


# ---------------------------------------------------------------- the hash split
def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _HASH_M1
    h = h ^ (h >> np.uint64(27))
    h = h * _HASH_M2
    return h ^ (h >> np.uint64(31))


def track_hash(frame: pd.DataFrame, columns: tuple[str, ...], labels: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash per track of its float32 `columns` values and label, seeded: the same track
    gets the same hash in any file, piece or order."""
    h = np.full(len(frame), _mix(np.array([seed], np.uint64) + _GOLDEN)[0], np.uint64)
    for column in columns:
        values = frame[column].to_numpy(np.float32)
        bits = values.view(np.uint32).astype(np.uint64)
        bits[np.isnan(values)] = _NAN_BITS  # one NaN, whatever its payload
        h = _mix(h + bits + _GOLDEN)
    return _mix(h + labels.astype(np.uint64) + _GOLDEN)


def split_codes(h: np.ndarray, *, test_fraction: float, val_fraction: float) -> np.ndarray:
    """0 (train), 1 (validation) or 2 (test) per track, from the top 53 bits of its hash."""
    u = (h >> np.uint64(11)).astype(np.float64) / float(2 ** 53)
    return np.where(u < test_fraction, 2, np.where(u < test_fraction + val_fraction, 1, 0)).astype(np.int8)


def sample_key(h: np.ndarray) -> np.ndarray:
    """The key of the seeded sample: the tracks of smallest key are kept."""
    return _mix(h ^ _GOLDEN)


class _BottomK:
    """The `k` rows of smallest key seen so far (frame, labels, position in the split)."""

    def __init__(self, k: int):
        self.k, self.parts, self.threshold = k, [], None

    def add(self, frame: pd.DataFrame, labels: np.ndarray, keys: np.ndarray, positions: np.ndarray) -> None:
        keep = np.ones(len(keys), bool) if self.threshold is None else keys < self.threshold
        if not keep.any():
            return
        self.parts.append((_to_float32(frame[keep]), labels[keep], keys[keep], positions[keep]))
        if sum(len(p[2]) for p in self.parts) > self.k + self.k // 4:
            self._shrink()

    def _shrink(self) -> None:
        frame, labels, keys, positions = self._joined()
        if len(keys) > self.k:
            rows = np.argpartition(keys, self.k - 1)[: self.k]
            frame, labels, keys, positions = frame.iloc[rows], labels[rows], keys[rows], positions[rows]
            self.threshold = keys.max()
        self.parts = [(frame.reset_index(drop=True), labels, keys, positions)]

    def _joined(self):
        frames, labels, keys, positions = zip(*self.parts)
        return pd.concat(frames, ignore_index=True), *(np.concatenate(a) for a in (labels, keys, positions))

    def result(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        """(frame, labels, keys, positions) in the order of the positions."""
        if not self.parts:
            return pd.DataFrame(), np.zeros(0, np.int32), np.zeros(0, np.uint64), np.zeros(0, np.int64)
        self._shrink()
        frame, labels, keys, positions = self.parts[0]
        order = np.argsort(positions, kind="stable")
        return frame.iloc[order].reset_index(drop=True), labels[order], keys[order], positions[order]

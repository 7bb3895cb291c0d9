"""The streamed data's cache on disk: built in two passes over the files (`build_stream_cache`), read
back split by split and chunk by chunk (`StreamCache`, `ChunkedTracks`). See `pidx.data.stream`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..utils import atomic_write_json
from .arrays import TrackArrays
from .io import TrackTable
from .layouts import get_layout
from .preprocess import Preprocessor
from .schema import CLASS_NAMES, NUM_CLASSES
from .stream import PIECE_TRACKS, SPLITS, _BottomK, iter_pieces, sample_key, split_codes, track_hash

STREAM_CACHE_VERSION = 1
_ARRAYS = {"features": np.float32, "mask": np.bool_, "label": np.int32, "p": np.float32}
_LABEL, _POSITION = "__label__", "__position__"


class ChunkedTracks:
    """One split of the stream cache: `num_tracks` preprocessed tracks on disk, read `chunk_tracks`
    at a time as `TrackArrays` of host arrays (`read`, `chunks`). `label` and `p` (4 bytes a track
    each) are held in memory once read; the features are not (`features` raises). `seed` (the data's
    split seed) seeds the order in which training visits the chunks, so that an ensemble member and
    a single run with the member's seed see the chunks in the same order."""

    def __init__(self, directory: Path, split: str, num_tracks: int, num_features: int, num_groups: int,
                 chunk_tracks: int, seed: int = 0):
        if chunk_tracks < 1:
            raise DataError(f"chunk_tracks must be >= 1, got {chunk_tracks}")
        self.directory, self.split, self.num_tracks = Path(directory), split, int(num_tracks)
        self.num_features, self.num_groups, self.chunk_tracks = num_features, num_groups, int(chunk_tracks)
        self.seed = int(seed)
        self._whole: dict[str, np.ndarray] = {}

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """`(start, stop)` row ranges of the chunks, in file order."""
        return [(s, min(s + self.chunk_tracks, self.num_tracks)) for s in range(0, self.num_tracks, self.chunk_tracks)]

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        width = {"features": self.num_features, "mask": self.num_groups}.get(name, 1)
        dtype = np.dtype(_ARRAYS[name])
        values = np.fromfile(self.directory / f"{self.split}.{name}", dtype=dtype, count=(stop - start) * width,
                             offset=start * width * dtype.itemsize)
        if len(values) != (stop - start) * width:
            raise DataError(f"{self.directory}: {self.split}.{name} is shorter than its metadata says; delete the "
                            "directory to rebuild the cache")
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
        return ChunkedTracks(self.directory, name, self.meta["splits"][name]["num_tracks"], lay.num_features,
                             lay.num_groups, chunk_tracks, seed)

    def sample(self, name: str) -> tuple[TrackTable, np.ndarray]:
        """The split's seeded sample as a validated table, and its rows' positions in the split."""
        table, positions = _sample_table(self.directory, name, self.meta, self.meta["source"])
        n = self.meta["splits"][name]["num_tracks"]
        table.source = f"{table.source} (seeded sample of {len(table):,} of {n:,} {name} tracks)"
        table.summary = dict(self.meta["summary"])
        return table, positions


def _release_memory() -> None:
    """Give the memory the passes freed back to the system before training starts: pyarrow's pool
    and glibc's heap keep freed pages otherwise, and they would count in the fit's peak."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is not None:  # glibc only
        trim(0)


def _add_counts(total: dict, part: dict) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            _add_counts(total.setdefault(k, {}), v)
        elif isinstance(v, (int, float, np.integer, np.floating)):
            total[k] = total.get(k, 0) + (v.item() if isinstance(v, np.generic) else v)


def build_stream_cache(directory: Path, files: list[Path], *, prepare: Callable, feature_layout: Callable,
                       seed: int, test_fraction: float,
                       val_fraction: float, sample_tracks: int, clip: float, tree: str, source: str,
                       piece_tracks: int = PIECE_TRACKS) -> StreamCache:
    """Build the cache in `directory` (see `pidx.data.stream`) unless a complete one is there.

    **Arguments:**

    - `files`: the track files, in order.
    - `prepare`: `(frame, ROOT dtypes or None, source) -> TrackTable` of the piece's validated tracks
      inside the momentum range (the data module's own reading rules).
    - `feature_layout`: `() -> FeatureLayout`, the model's detector groups (known once a piece is read).
    - `seed`: seed of the hash split and the samples.
    - `test_fraction`, `val_fraction`: expected shares of the split.
    - `sample_tracks`: tracks kept per split in the seeded sample (the train sample fits the preprocessing).
    - `clip`, `tree`: the preprocessing clip and the ROOT tree.
    - `source`: how messages name the data.
    """
    directory = Path(directory)
    if (directory / "meta.json").is_file():
        return StreamCache(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        meta = _pass_one(tmp, files, prepare, seed, test_fraction, val_fraction, sample_tracks, tree, piece_tracks)
        train, _ = _sample_table(tmp, "train", meta, source)
        pre = Preprocessor.fit(train, feature_layout(), clip=clip, track_layout=meta["track_layout"])
        _pass_two(tmp, files, prepare, pre, meta, seed, test_fraction, val_fraction, tree, piece_tracks)
        atomic_write_json(tmp / "meta.json", {**meta, "source": source, "preprocessor": pre.to_dict()})
        _release_memory()
        try:
            os.replace(tmp, directory)
        except OSError:  # another process built the same cache meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StreamCache(directory)


def _sample_table(directory: Path, name: str, meta: dict, source: str) -> tuple[TrackTable, np.ndarray]:
    frame = pd.read_parquet(directory / f"{name}.sample.parquet")
    labels, positions = frame.pop(_LABEL).to_numpy(np.int32), frame.pop(_POSITION).to_numpy(np.int64)
    return TrackTable(frame, labels, source, dict(meta["dropped"]), meta["track_layout"], {}), positions


def _pieces(files, prepare, tree, piece_tracks):
    """Validated, in-range pieces of every file: `(file, table)`."""
    first_columns = None
    for path in files:
        for i, (frame, dtypes) in enumerate(iter_pieces(path, tree=tree, rows=piece_tracks)):
            if i == 0 and first_columns is not None and list(frame.columns) != first_columns:
                extra = sorted(set(frame.columns) ^ set(first_columns))
                raise DataError(f"{path}: has other columns than {files[0]} ({', '.join(map(str, extra[:10]))}); "
                                "all files of one source must share a layout")
            first_columns = first_columns or list(frame.columns)
            table = prepare(frame, dtypes, str(path))
            if len(table) and table.labels is None:
                raise DataError(f"{path}: column 'mc_pdg' is needed for training")
            yield path, table


def _split(table: TrackTable, seed: int, test_fraction: float, val_fraction: float):
    """Each track's hash and split code (0 train, 1 validation, 2 test); both passes call this, so they
    agree on every track."""
    h = track_hash(table.frame, get_layout(table.layout).features.input_columns, table.labels, seed)
    return h, split_codes(h, test_fraction=test_fraction, val_fraction=val_fraction)


def _pass_one(tmp, files, prepare, seed, test_fraction, val_fraction, sample_tracks, tree, piece_tracks) -> dict:
    counts = {s: 0 for s in SPLITS}
    class_counts = {s: np.zeros(NUM_CLASSES, np.int64) for s in SPLITS}
    samples = {s: _BottomK(sample_tracks) for s in SPLITS}
    dropped, summary, track_layout, availability = {}, {}, None, {s: {} for s in SPLITS}
    for path, table in _pieces(files, prepare, tree, piece_tracks):
        _add_counts(dropped, table.dropped)
        _add_counts(summary, table.summary)
        if not len(table):
            continue
        track_layout = track_layout or table.layout
        h, codes = _split(table, seed, test_fraction, val_fraction)
        keys = sample_key(h)
        for code, name in enumerate(SPLITS):
            rows = np.flatnonzero(codes == code)
            positions = counts[name] + np.arange(len(rows), dtype=np.int64)
            counts[name] += len(rows)
            class_counts[name] += np.bincount(table.labels[rows], minlength=NUM_CLASSES)
            for flag in (c for c in table.frame.columns if table.frame[c].dtype == np.int8):
                availability[name][flag] = availability[name].get(flag, 0) + int(table.frame[flag].to_numpy()[rows].sum())
            samples[name].add(table.frame.iloc[rows], table.labels[rows], keys[rows], positions)
    if track_layout is None or min(counts.values()) == 0:
        raise DataError(f"{files[0] if len(files) == 1 else f'{len(files)} files'}: the momentum range leaves "
                        f"{counts} tracks per split; every split needs tracks")
    for name in SPLITS:
        frame, labels, positions = samples[name].result()
        frame.assign(**{_LABEL: labels, _POSITION: positions}).to_parquet(tmp / f"{name}.sample.parquet", index=False)
    return {"version": STREAM_CACHE_VERSION, "track_layout": track_layout, "dropped": dropped, "summary": summary,
            "splits": {name: {"num_tracks": counts[name],
                              "class_counts": dict(zip(CLASS_NAMES, class_counts[name].tolist())),
                              "flag_counts": availability[name]} for name in SPLITS}}


def _pass_two(tmp, files, prepare, pre, meta, seed, test_fraction, val_fraction, tree, piece_tracks) -> None:
    outs = {(s, a): open(tmp / f"{s}.{a}", "wb") for s in SPLITS for a in _ARRAYS}
    written = {s: 0 for s in SPLITS}
    try:
        for path, table in _pieces(files, prepare, tree, piece_tracks):
            if not len(table):
                continue
            _, codes = _split(table, seed, test_fraction, val_fraction)
            feats, mask = pre.transform(table)
            p = table.momentum.astype(np.float32)
            for code, name in enumerate(SPLITS):
                rows = np.flatnonzero(codes == code)
                for array, values in (("features", feats[rows]), ("mask", mask[rows]),
                                      ("label", table.labels[rows].astype(np.int32)), ("p", p[rows])):
                    np.ascontiguousarray(values, dtype=_ARRAYS[array]).tofile(outs[name, array])
                written[name] += len(rows)
    finally:
        for f in outs.values():
            f.close()
    for name in SPLITS:
        if written[name] != meta["splits"][name]["num_tracks"]:
            raise DataError(f"{files[0].parent}: the files changed while the stream cache was built "
                            f"({name}: {meta['splits'][name]['num_tracks']} then {written[name]} tracks)")


__all__ = ["STREAM_CACHE_VERSION", "ChunkedTracks", "StreamCache", "build_stream_cache"]

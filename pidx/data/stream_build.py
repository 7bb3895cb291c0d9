"""Building the stream cache (`build_stream_cache`): two passes over the files, each process of a
run over its own share of them. See `pidx.data.stream` for what the passes do.

The temporary directory holds, besides the final cache files:

- `file-<j>.json`: what pass 1 counted in file `j` (tracks, classes and flags per split, dropped
  tracks, the summary, its columns, the process that read it);
- `candidates-<k>.<split>.parquet`: process `k`'s `sample_tracks` tracks of smallest sample key,
  from which process 0 takes the global sample (the smallest keys of all are among them);
- `preprocessor.json`: the statistics process 0 fitted, which every process uses in pass 2.

Pass 2 writes `<split>.<j>.<array>`, one segment per split and file. Since the segments follow the
file order whoever wrote them, the cache does not depend on how many processes built it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..utils import atomic_write_json, make_temp_dir
from .group import ProcessGroup, file_shares
from .io import TrackTable
from .layouts import get_layout
from .preprocess import Preprocessor
from .schema import CLASS_NAMES, NUM_CLASSES
from .stream import PIECE_TRACKS, SPLITS, _BottomK, iter_pieces, sample_key, split_codes, track_hash
from .stream_cache import ARRAYS, LABEL, POSITION, STREAM_CACHE_VERSION, StreamCache, _sample_table

_KEY, _FILE_SHIFT = "__key__", 40  # a candidate's position: file index << 40 | position inside the file


def build_stream_cache(directory: Path, files: list[Path], *, prepare: Callable, feature_layout: Callable,
                       seed: int, test_fraction: float, val_fraction: float, sample_tracks: int, clip: float,
                       knee: float | None, tree: str, source: str, piece_tracks: int = PIECE_TRACKS,
                       group: ProcessGroup = ProcessGroup()) -> StreamCache:
    """Build the cache in `directory` (see `pidx.data.stream`) unless a complete one is there.

    **Arguments:**

    - `files`: the track files, in order.
    - `prepare`: `(frame, ROOT dtypes or None, source) -> TrackTable` of the piece's validated tracks
      inside the momentum range (the data module's own reading rules).
    - `feature_layout`: `() -> FeatureLayout`, the model's detector groups (known once a piece is read).
    - `seed`: seed of the hash split and the samples.
    - `test_fraction`, `val_fraction`: expected shares of the split.
    - `sample_tracks`: tracks kept per split in the seeded sample (the train sample fits the preprocessing).
    - `clip`, `knee`, `tree`: the preprocessing clip and knee, and the ROOT tree.
    - `source`: how messages name the data.
    - `group`: the processes building it together, each reading its share of the files; `directory`
      must then be on a filesystem all of them see.
    """
    directory = Path(directory)
    ready = group.flags((directory / "meta.json").is_file())
    if ready.all():
        return StreamCache(directory)
    if ready.any():
        raise DataError(f"{directory}: processes {np.flatnonzero(ready).tolist()} see a built stream cache there and "
                        f"processes {np.flatnonzero(~ready).tolist()} do not; processes that stream data must share "
                        "the cache directory (PIDX_CACHE_DIR)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _workspace(directory, group)
    try:
        mine = file_shares([f.stat().st_size for f in files], group.count)[group.index]
        passes = (prepare, seed, test_fraction, val_fraction, tree, piece_tracks)
        group.together("reading its files (stream cache, pass 1)",
                       lambda: _pass_one(tmp, files, mine, passes, sample_tracks, group.index))
        group.together("looking for the other processes' pass-1 results", lambda: _check_shared(tmp, files))
        first = group.is_first  # process 0 merges and finishes; the others wait for its verdict
        meta = group.together("merging the processes' samples", lambda: _merge(
            tmp, files, group.count, sample_tracks, source, feature_layout, clip, knee) if first else None)
        pre = Preprocessor.from_dict(json.loads((tmp / "preprocessor.json").read_text()))
        group.together("preprocessing its files (stream cache, pass 2)", lambda: _pass_two(tmp, files, mine, passes, pre))
        group.together("finishing the stream cache", lambda: _finish(tmp, directory, meta, pre) if first else None)
        _release_memory()
    except BaseException:
        if group.is_first:  # alone, the only process is the first
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    group.barrier("pidx-stream-cache-done")
    return StreamCache(directory)


def _workspace(directory: Path, group: ProcessGroup) -> Path:
    """A fresh temporary directory beside `directory` (every process of a group gets the same one)."""
    if group.count == 1:
        return make_temp_dir(f".{directory.name}.", directory.parent)
    tmp = directory.parent / f".{directory.name}.building"
    if group.is_first:  # a crashed earlier build may have left one
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    group.barrier("pidx-stream-cache-start")

    def visible():
        if not tmp.is_dir():
            raise DataError(f"{tmp}: process {group.index} cannot see the directory process 0 made; processes that "
                            "stream data must share the cache directory (PIDX_CACHE_DIR)")

    group.together("opening the shared stream cache", visible)
    return tmp


def _finish(tmp: Path, directory: Path, meta: dict, pre: Preprocessor) -> None:
    for path in [*tmp.glob("file-*.json"), *tmp.glob("candidates-*.parquet"), tmp / "preprocessor.json"]:
        os.unlink(path)  # the passes' working files; the cache keeps what meta.json records
    atomic_write_json(tmp / "meta.json", {**meta, "preprocessor": pre.to_dict()})
    try:
        os.replace(tmp, directory)
    except OSError:  # another run built the same cache meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


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


def _pieces(path: Path, passes):
    """The validated, in-range pieces of one file, and the file's columns."""
    prepare, _, _, _, tree, piece_tracks = passes
    for frame, dtypes in iter_pieces(path, tree=tree, rows=piece_tracks):
        table = prepare(frame, dtypes, str(path))
        if len(table) and table.labels is None:
            raise DataError(f"{path}: column 'mc_pdg' is needed for training")
        yield table, [str(c) for c in frame.columns]


def _split(table: TrackTable, passes):
    """Each track's hash and split code (0 train, 1 validation, 2 test); both passes call this, so they
    agree on every track."""
    _, seed, test_fraction, val_fraction, _, _ = passes
    h = track_hash(table.frame, get_layout(table.layout).features.input_columns, table.labels, seed)
    return h, split_codes(h, test_fraction=test_fraction, val_fraction=val_fraction)


def _pass_one(tmp: Path, files: list[Path], mine: list[int], passes, sample_tracks: int, rank: int) -> None:
    samples = {s: _BottomK(sample_tracks) for s in SPLITS}
    for j in mine:
        counts = {s: 0 for s in SPLITS}
        class_counts = {s: np.zeros(NUM_CLASSES, np.int64) for s in SPLITS}
        flags: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        dropped, summary, layout, columns = {}, {}, None, None
        for table, piece_columns in _pieces(files[j], passes):
            columns = columns or piece_columns
            _add_counts(dropped, table.dropped)
            _add_counts(summary, table.summary)
            if not len(table):
                continue
            layout = layout or table.layout
            h, codes = _split(table, passes)
            keys = sample_key(h)
            for code, name in enumerate(SPLITS):
                rows = np.flatnonzero(codes == code)
                positions = (np.int64(j) << _FILE_SHIFT) + counts[name] + np.arange(len(rows), dtype=np.int64)
                counts[name] += len(rows)
                class_counts[name] += np.bincount(table.labels[rows], minlength=NUM_CLASSES)
                for flag in (c for c in table.frame.columns if table.frame[c].dtype == np.int8):
                    flags[name][flag] = flags[name].get(flag, 0) + int(table.frame[flag].to_numpy()[rows].sum())
                samples[name].add(table.frame.iloc[rows], table.labels[rows], keys[rows], positions)
        atomic_write_json(tmp / f"file-{j}.json", {
            "process": rank, "columns": columns, "track_layout": layout, "dropped": dropped, "summary": summary,
            "counts": counts, "class_counts": {s: c.tolist() for s, c in class_counts.items()}, "flag_counts": flags})
    for name in SPLITS:
        frame, labels, keys, positions = samples[name].result()
        frame.assign(**{LABEL: labels, _KEY: keys, POSITION: positions}).to_parquet(
            tmp / f"candidates-{rank}.{name}.parquet", index=False)


def _check_shared(tmp: Path, files: list[Path]) -> None:
    missing = [j for j in range(len(files)) if not (tmp / f"file-{j}.json").is_file()]
    if missing:
        raise DataError(f"{tmp}: no pass-1 result for {files[missing[0]]} (read by another process); processes "
                        "that stream data must share the cache directory (PIDX_CACHE_DIR)")


def _merge(tmp: Path, files: list[Path], count: int, sample_tracks: int, source: str, feature_layout: Callable,
           clip: float, knee: float | None) -> dict:
    """Process 0: the files' counts in file order, the global samples, the fitted preprocessing."""
    stats = [json.loads((tmp / f"file-{j}.json").read_text()) for j in range(len(files))]
    for j, s in enumerate(stats):
        if s["columns"] is not None and stats[0]["columns"] is not None and s["columns"] != stats[0]["columns"]:
            extra = sorted(set(s["columns"]) ^ set(stats[0]["columns"]))
            raise DataError(f"{files[j]}: has other columns than {files[0]} ({', '.join(extra[:10])}); "
                            "all files of one source must share a layout")
    counts = {name: sum(s["counts"][name] for s in stats) for name in SPLITS}
    track_layout = next((s["track_layout"] for s in stats if s["track_layout"]), None)
    if track_layout is None or min(counts.values()) == 0:
        raise DataError(f"{files[0] if len(files) == 1 else f'{len(files)} files'}: the momentum range leaves "
                        f"{counts} tracks per split; every split needs tracks")
    dropped, summary = {}, {}
    for s in stats:
        _add_counts(dropped, s["dropped"])
        _add_counts(summary, s["summary"])
    splits = {}
    for name in SPLITS:
        offsets = np.cumsum([0] + [s["counts"][name] for s in stats])
        sample = _BottomK(sample_tracks)
        for k in range(count):
            frame = pd.read_parquet(tmp / f"candidates-{k}.{name}.parquet")
            labels, keys = frame.pop(LABEL).to_numpy(np.int32), frame.pop(_KEY).to_numpy(np.uint64)
            sample.add(frame, labels, keys, frame.pop(POSITION).to_numpy(np.int64))
        frame, labels, _, positions = sample.result()
        positions = offsets[positions >> _FILE_SHIFT] + (positions & ((1 << _FILE_SHIFT) - 1))
        frame.assign(**{LABEL: labels, POSITION: positions}).to_parquet(tmp / f"{name}.sample.parquet", index=False)
        flags: dict[str, int] = {}
        for s in stats:
            _add_counts(flags, s["flag_counts"][name])
        splits[name] = {"num_tracks": counts[name],
                        "class_counts": dict(zip(CLASS_NAMES, np.sum([s["class_counts"][name] for s in stats],
                                                                     axis=0).tolist())),
                        "flag_counts": flags,
                        "segments": [[j, s["counts"][name]] for j, s in enumerate(stats) if s["counts"][name]]}
    meta = {"version": STREAM_CACHE_VERSION, "track_layout": track_layout, "dropped": dropped, "summary": summary,
            "splits": splits, "source": source,
            "files": [{"path": str(f), "process": s["process"], "tracks": s["counts"]} for f, s in zip(files, stats)]}
    train, _ = _sample_table(tmp, "train", meta, source)
    pre = Preprocessor.fit(train, feature_layout(), clip=clip, knee=knee, track_layout=track_layout)
    atomic_write_json(tmp / "preprocessor.json", pre.to_dict())
    return meta


def _pass_two(tmp: Path, files: list[Path], mine: list[int], passes, pre: Preprocessor) -> None:
    for j in mine:
        expected = json.loads((tmp / f"file-{j}.json").read_text())["counts"]
        outs, written = {}, {s: 0 for s in SPLITS}
        try:
            for table, _ in _pieces(files[j], passes):
                if not len(table):
                    continue
                _, codes = _split(table, passes)
                feats, mask = pre.transform(table)
                p = table.momentum.astype(np.float32)
                for code, name in enumerate(SPLITS):
                    rows = np.flatnonzero(codes == code)
                    if not len(rows):
                        continue
                    for array, values in (("features", feats[rows]), ("mask", mask[rows]),
                                          ("label", table.labels[rows].astype(np.int32)), ("p", p[rows])):
                        if (name, array) not in outs:
                            outs[name, array] = open(tmp / f"{name}.{j}.{array}", "wb")
                        np.ascontiguousarray(values, dtype=ARRAYS[array]).tofile(outs[name, array])
                    written[name] += len(rows)
        finally:
            for f in outs.values():
                f.close()
        if written != expected:
            raise DataError(f"{files[j]}: the file changed while the stream cache was built ({expected} then "
                            f"{written} tracks per split)")


__all__ = ["build_stream_cache"]

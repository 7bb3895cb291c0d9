"""Read and write track files: CSV, Parquet and ROOT (`uproot`), one file, a directory or a glob.

A ROOT file's tree (`pid_features` by default) is read with uproot, no ROOT installation
needed; its branch types are checked against the C++ declarations of the O2 extractor
(`check_root_types`), since a float where the extractor writes an int means the file is
not what it claims to be.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as _glob
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import DataError

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".root": "root"}
DEFAULT_TREE = "pid_features"
# dtype kinds each C++ branch type accepts
_KINDS = {"float": "f", "int": "iu", "bool": "b", "uint8": "iu"}
_KIND_TEXT = {"float": "a floating-point type", "int": "an integer type", "bool": "bool",
              "uint8": "an integer type (uint8_t)"}


def expand_sources(source: str | os.PathLike) -> list[Path]:
    """A file, a directory (its track files, sorted) or a glob pattern → the files, sorted."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path}: directory has no track files ({', '.join(sorted(SUFFIXES))})")
        return files
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in _glob.glob(text) if Path(p).is_file())
        if not files:
            raise DataError(f"{text}: no file matches this pattern")
        return files
    return [path]


def _tree_paths(file) -> list[str]:
    """Every TTree (or RNTuple) in an open uproot file, directories included, in the file's order."""
    seen = {}
    for key, cls in file.classnames(recursive=True, cycle=False).items():
        if cls.startswith("TTree") or cls == "ROOT::RNTuple":
            seen.setdefault(key, None)
    return list(seen)


def resolve_trees(file, tree: str, path) -> list[str]:
    """The trees `tree` names in an open ROOT file.

    - a glob (`DF_*/pid_features`): every matching tree, in the file's order;
    - a path or name of a tree in the file: that tree;
    - a name with no such tree at the top but inside time-frame directories (`DF_<n>/`, as
      O2's writers store AO2D-style files): that tree in every one of them.
    """
    trees = _tree_paths(file)
    if any(ch in tree for ch in "*?["):
        found = [t for t in trees if fnmatch.fnmatchcase(t, tree)]
    elif tree in trees:
        found = [tree]
    else:
        found = [t for t in trees if "/" in t and t.rsplit("/", 1)[1] == tree and t.split("/", 1)[0].startswith("DF_")]
    if not found:
        listing = ", ".join(trees[:12]) + (f" and {len(trees) - 12} more" if len(trees) > 12 else "") or "none"
        raise DataError(f"{path}: has no tree '{tree}' (trees in the file: {listing}); set data.tree (or --tree) "
                        "to a tree, a path such as DF_1/pid_features, or a glob such as 'DF_*/pid_features'")
    return found


def _signature(t) -> dict[str, str]:
    return {name: str(t[name].interpretation) for name in t.keys()}


@contextlib.contextmanager
def open_root_trees(path: Path, tree: str):
    """The TTrees `tree` names in the ROOT file `path` (`resolve_trees`), open inside the block, as
    (name, tree) pairs; errors name the file, and the directory whose tree disagrees with the first
    one in branches or types."""
    try:
        import uproot
    except ImportError:  # a core dependency; only a broken install lands here
        raise DataError(f"{path}: reading ROOT files needs uproot (pip install uproot)") from None
    try:
        file = uproot.open(path)
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        raise DataError(f"{path}: cannot open as a ROOT file: {type(exc).__name__}: {exc}") from None
    with file:
        names = resolve_trees(file, tree, path)
        trees = [(name, file[name]) for name in names]
        first_name, first = names[0], _signature(trees[0][1])
        for name, t in trees[1:]:
            other = _signature(t)
            if other != first:
                diff = sorted(set(other) ^ set(first))
                what = (f"other branches than {first_name} ({', '.join(diff[:8])})" if diff else
                        "branch '{0}' of type {1} where {2} has {3}".format(
                            *next((b, other[b], first_name, first[b]) for b in first if other[b] != first[b])))
                raise DataError(f"{path}: {name} has {what}; every tree read as one source must share a layout")
        yield trees


def _read_root(path: Path, tree: str) -> tuple[pd.DataFrame, dict[str, np.dtype], dict[str, int]]:
    frames, counts, dtypes = [], {}, None
    with open_root_trees(path, tree) as trees:
        for name, t in trees:
            try:
                arrays = t.arrays(library="np")
            except Exception as exc:
                raise DataError(f"{path}: cannot read tree '{name}': {type(exc).__name__}: {exc}") from None
            dtypes = dtypes or {k: v.dtype for k, v in arrays.items()}
            frames.append(pd.DataFrame({k: v for k, v in arrays.items()}))
            counts[name] = len(frames[-1])
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return table, dtypes, counts


def check_root_types(dtypes: dict[str, np.dtype], declared: dict[str, str], source: str) -> None:
    """Each declared branch must hold the C++ type the extractor writes (any width of it)."""
    for name, ctype in declared.items():
        if name in dtypes and dtypes[name].kind not in _KINDS[ctype]:
            raise DataError(f"{source}: branch '{name}' has type {dtypes[name]}; the O2 extractor writes it as "
                            f"{ctype}, so it must be {_KIND_TEXT[ctype]}")


def track_file_kind(path: Path) -> str:
    """`csv`, `parquet` or `root` for a track file that exists; an error naming it otherwise."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; accepted are {sorted(SUFFIXES)}, "
                        "a directory or a glob")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return kind


class RawTracks(NamedTuple):
    """A source read as it is: the table, ROOT branch dtypes (None for CSV/Parquet), a description
    for messages, and the tracks read from each ROOT tree (`file:tree` → count)."""

    frame: pd.DataFrame
    dtypes: dict[str, np.dtype] | None
    source: str
    trees: dict[str, int]


def read_one(path: Path, *, tree: str = DEFAULT_TREE) -> tuple[pd.DataFrame, dict[str, np.dtype] | None, dict]:
    """One file → (table, branch dtypes for ROOT files else None, tracks per ROOT tree), errors naming the file."""
    kind = track_file_kind(path)
    if kind == "root":
        return _read_root(path, tree)
    try:
        return (pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)), None, {}
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs the file name
        raise DataError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from None


def read_tracks_raw(source: str | os.PathLike, *, tree: str = DEFAULT_TREE) -> RawTracks:
    """Every file of `source` (every tree `tree` names in a ROOT file) concatenated in order."""
    files = expand_sources(source)
    frames, dtypes, trees = [], None, {}
    for f in files:
        df, dt, counts = read_one(f, tree=tree)
        if frames and list(df.columns) != list(frames[0].columns):
            extra = sorted(set(df.columns) ^ set(frames[0].columns))
            raise DataError(f"{f}: has other columns than {files[0]} ({', '.join(map(str, extra[:10]))}); all files "
                            "of one source must share a layout")
        if frames and dt is not None:  # the type check sees the first file's types: the others must agree
            other = [c for c in dt if dt[c].kind != dtypes[c].kind]
            if other:
                raise DataError(f"{f}: branch '{other[0]}' has type {dt[other[0]]} where {files[0]} has "
                                f"{dtypes[other[0]]}; all files of one source must share a layout")
        frames.append(df)
        dtypes = dt if dtypes is None else dtypes
        trees.update({f"{f}:{name}": n for name, n in counts.items()})
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    what = str(files[0]) if len(files) == 1 else f"{source} ({len(files)} files)"
    return RawTracks(table, dtypes, what, trees)


def read_table(path: str | os.PathLike, *, tree: str = DEFAULT_TREE) -> pd.DataFrame:
    """Read a CSV, Parquet or ROOT file (or a directory/glob of them) into a DataFrame."""
    return read_tracks_raw(path, tree=tree).frame


_ROOT_DTYPES = {"float": np.float32, "int": np.int32, "bool": np.bool_, "uint8": np.uint8}


def root_branches(df: pd.DataFrame, path: Path, types: dict[str, str]) -> dict[str, np.ndarray]:
    """The columns of `df` as ROOT branches: `types`' C++ types, else float32 or their own int/bool type."""
    branches = {}
    for c in df.columns:
        v = df[c].to_numpy()
        if c in types:
            v = v.astype(_ROOT_DTYPES[types[c]])
        elif v.dtype.kind == "f":
            v = v.astype(np.float32)
        elif v.dtype.kind not in "iub":
            raise DataError(f"{path}: column '{c}' of type {v.dtype} cannot be written to a ROOT tree")
        branches[str(c)] = v
    return branches


def write_root(df: pd.DataFrame, path: Path, *, tree: str = DEFAULT_TREE, types: dict[str, str] | None = None) -> None:
    """Write `df` as a flat TTree; columns named in `types` get that C++ type, others float32/their int type."""
    import uproot

    branches = root_branches(df, path, types or {})
    with uproot.recreate(path) as f:  # mktree: a TTree, as ROOT's own TTree::Branch writes (not an RNTuple)
        out = f.mktree(tree, {name: v.dtype for name, v in branches.items()})
        if len(df):
            out.extend(branches)


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, root_types: dict[str, str] | None = None) -> Path:
    """Write a CSV, Parquet or ROOT file atomically (temp file + rename)."""
    from ..utils import atomic_path

    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported output type '{path.suffix}'; accepted are {sorted(SUFFIXES)}")
    with atomic_path(path) as tmp:
        if kind == "csv":
            df.to_csv(tmp, index=False)
        elif kind == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            write_root(df, Path(tmp), types=root_types)
    return path


class TableWriter:
    """Write a table chunk by chunk (CSV, Parquet or ROOT), atomically: the rows go to a temporary
    file beside `path`, renamed onto it by `close()`; `abort()` (or an exception inside a `with`
    block) removes it, so a crash never leaves a half-written output.

    **Arguments:**

    - `path`: the output file; its suffix chooses the format.
    - `root_types`: C++ types of ROOT branches by column (as `write_root`).
    """

    def __init__(self, path: str | os.PathLike, *, root_types: dict[str, str] | None = None):
        from ..utils import atomic_path

        self.path = Path(path)
        self.kind = SUFFIXES.get(self.path.suffix.lower())
        if self.kind is None:
            raise DataError(f"{self.path}: unsupported output type '{self.path.suffix}'; accepted are "
                            f"{sorted(SUFFIXES)}")
        self.root_types, self.rows = root_types or {}, 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._sink = self._schema = None

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of `df` (the same columns, in the same order, as the first chunk)."""
        if self.kind == "csv":
            df.to_csv(self._tmp, mode="w" if self.rows == 0 else "a", header=self.rows == 0, index=False)
        elif self.kind == "parquet":
            self._write_parquet(df)
        else:
            self._write_root(df)
        self.rows += len(df)

    def _write_parquet(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._sink is None:
            self._schema = table.schema
            self._sink = pq.ParquetWriter(self._tmp, self._schema)
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, ValueError) as exc:
                raise DataError(f"{self.path}: rows {self.rows:,} on have other column types than the first rows "
                                f"({exc}); convert the input to Parquet or ROOT, or write CSV") from None
        self._sink.write_table(table)

    def _write_root(self, df: pd.DataFrame) -> None:
        import uproot

        branches = root_branches(df, self.path, self.root_types)
        if self._sink is None:
            self._file = uproot.recreate(self._tmp)
            self._sink = self._file.mktree(DEFAULT_TREE, {name: v.dtype for name, v in branches.items()})
        self._sink.extend(branches)

    def _close_sink(self) -> None:
        if self._sink is not None:  # CSV has none: each chunk is appended and closed
            (self._sink if self.kind == "parquet" else self._file).close()

    def close(self) -> Path:
        """Finish the file and move it onto `path`."""
        self._close_sink()
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file; `path` is left as it was."""
        with contextlib.suppress(Exception):
            self._close_sink()
        with contextlib.suppress(RuntimeError):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


__all__ = ["TableWriter", "root_branches", "SUFFIXES", "DEFAULT_TREE", "expand_sources", "track_file_kind", "resolve_trees", "open_root_trees",
           "RawTracks", "read_one", "read_tracks_raw", "read_table",
           "check_root_types", "write_root", "write_table"]

"""Read and write track files: CSV, Parquet and ROOT (`uproot`), one file, a directory or a glob.

A ROOT file's tree (`pid_features` by default) is read with uproot, no ROOT installation
needed; its branch types are checked against the C++ declarations of the O2 extractor
(`check_root_types`), since a float where the extractor writes an int means the file is
not what it claims to be.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import os
from pathlib import Path

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


@contextlib.contextmanager
def open_root_tree(path: Path, tree: str):
    """The TTree `tree` of the ROOT file `path`, open inside the block; errors name the file (and
    list its trees when `tree` is not one of them)."""
    try:
        import uproot
    except ImportError:  # a core dependency; only a broken install lands here
        raise DataError(f"{path}: reading ROOT files needs uproot (pip install uproot)") from None
    try:
        file = uproot.open(path)
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        raise DataError(f"{path}: cannot open as a ROOT file: {type(exc).__name__}: {exc}") from None
    with file:
        trees = [k.split(";")[0] for k, cls in file.classnames().items()
                 if cls.startswith("TTree") or cls == "ROOT::RNTuple"]
        if tree not in trees:
            listing = ", ".join(sorted(set(trees))) or "none"
            raise DataError(f"{path}: has no tree '{tree}' (trees in the file: {listing}); set data.tree "
                            "to choose another")
        yield file[tree]


def _read_root(path: Path, tree: str) -> tuple[pd.DataFrame, dict[str, np.dtype]]:
    with open_root_tree(path, tree) as t:
        try:
            arrays = t.arrays(library="np")
        except Exception as exc:
            raise DataError(f"{path}: cannot read tree '{tree}': {type(exc).__name__}: {exc}") from None
    dtypes = {k: v.dtype for k, v in arrays.items()}
    return pd.DataFrame({k: v for k, v in arrays.items()}), dtypes


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


def read_one(path: Path, *, tree: str = DEFAULT_TREE) -> tuple[pd.DataFrame, dict[str, np.dtype] | None]:
    """One file → (table, branch dtypes for ROOT files else None), errors naming the file."""
    kind = track_file_kind(path)
    if kind == "root":
        return _read_root(path, tree)
    try:
        return (pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)), None
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs the file name
        raise DataError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from None


def read_tracks_raw(source: str | os.PathLike, *, tree: str = DEFAULT_TREE):
    """Every file of `source` concatenated in order → (table, ROOT dtypes or None, description)."""
    files = expand_sources(source)
    frames, dtypes = [], None
    for f in files:
        df, dt = read_one(f, tree=tree)
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
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    what = str(files[0]) if len(files) == 1 else f"{source} ({len(files)} files)"
    return table, dtypes, what


def read_table(path: str | os.PathLike, *, tree: str = DEFAULT_TREE) -> pd.DataFrame:
    """Read a CSV, Parquet or ROOT file (or a directory/glob of them) into a DataFrame."""
    return read_tracks_raw(path, tree=tree)[0]


_ROOT_DTYPES = {"float": np.float32, "int": np.int32, "bool": np.bool_, "uint8": np.uint8}


def write_root(df: pd.DataFrame, path: Path, *, tree: str = DEFAULT_TREE, types: dict[str, str] | None = None) -> None:
    """Write `df` as a flat TTree; columns named in `types` get that C++ type, others float32/their int type."""
    import uproot

    types = types or {}
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


__all__ = ["SUFFIXES", "DEFAULT_TREE", "expand_sources", "track_file_kind", "open_root_tree", "read_one", "read_tracks_raw", "read_table",
           "check_root_types", "write_root", "write_table"]

"""Small helpers shared across pidx: atomic writes, stable hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path


def current_umask() -> int:
    """The process's file-mode creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def private_to_shared(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give a file (0666) or directory (0777) made by `tempfile` (0600/0700) the mode the user's umask
    gives a new one, so runs and exports in group areas (EOS, AFS) are readable as the user intends."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def make_temp_dir(prefix: str, directory: str | os.PathLike) -> Path:
    """`tempfile.mkdtemp` with the mode of a directory made by the user (umask), not 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    private_to_shared(path, directory=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    A crash mid-write leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    private_to_shared(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh hidden directory; on success make `path` point to it atomically.

    `path` becomes a symbolic link to a complete hidden directory beside it
    (`.<name>.<random>`), replaced with one `rename` of a new link, so a reader (or a
    crash at any instant) only ever sees the old complete directory or the new one.
    Hidden directories left by an earlier crash are removed on the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make_temp_dir(f".{path.name}.", path.parent)
    try:
        yield data
        link = path.parent / f".{path.name}.link-{uuid.uuid4().hex}"
        os.symlink(data.name, link)
        old = _link_target(path)
        if path.exists() and not path.is_symlink():  # a plain directory from elsewhere
            aside = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
            os.replace(path, aside)
            old = aside
        os.replace(link, path)
        _fsync_dir(path.parent)
        for stale in path.parent.glob(f".{path.name}.*"):
            if stale.name != data.name and not stale.name.startswith(f".{path.name}.link-"):
                shutil.rmtree(stale, ignore_errors=True)
        if old is not None and old.exists() and old != data:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise


def _link_target(path: Path) -> Path | None:
    return path.parent / os.readlink(path) if path.is_symlink() else None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_dir(path: str | os.PathLike) -> None:
    """Remove a directory written by `atomic_dir` (the link and its target)."""
    path = Path(path)
    target = _link_target(path)
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)


def resolve_named_class(name: str, registry: dict, base: type, *, kind: str) -> type:
    """A built-in name from `registry` (a class or an import path) or a `package.module:Class` path.

    Errors (ValueError) suggest the closest built-in name and check that the class
    subclasses `base`.
    """
    import difflib

    target = registry.get(name, name)
    if isinstance(target, type):
        return target
    if ":" not in target:
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown {kind} '{name}'{hint}; built-in {kind}s are {sorted(registry)}, "
                         "or give 'package.module:Class'")
    cls = import_object(target, kind=kind)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"'{target}' is not a pidx {base.__name__} subclass")
    return cls


def import_object(path: str, *, kind: str):
    """The object named by a `package.module:name` import path (ValueError naming it otherwise)."""
    import importlib

    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{kind} must be an import path 'package.module:name', got {path!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {kind} '{path}': {exc}") from None


def parse_duration(value, *, what: str = "duration") -> float | None:
    """Seconds from a number of seconds or a `"DD:HH:MM:SS"` / `"HH:MM:SS"` / `"MM:SS"` string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            parts = [float(p) for p in value.split(":")]
        except ValueError:
            parts = []
        if not 1 <= len(parts) <= 4:
            raise ValueError(f"{what} {value!r} is not seconds or DD:HH:MM:SS")
        seconds = sum(p * f for p, f in zip(reversed(parts), (1, 60, 3600, 86400)))
    else:
        raise ValueError(f"{what} must be seconds or a DD:HH:MM:SS string, got {value!r}")
    if not seconds > 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return seconds


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value, *, what: str = "size") -> int:
    """Bytes from a number or a string such as `"2GB"`, `"500 MB"`, `"1.5GiB"` (decimal and binary units)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if match is None or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(f"{what} {value!r} is not a size: give bytes or a number with a unit "
                             f"({', '.join(u.upper() for u in _BYTE_UNITS if u)})")
        number = float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"{what} must be a number of bytes or a string like '4GB', got {value!r}")
    if not number > 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return int(number)


def stable_hash(obj) -> str:
    """Short hash of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


__all__ = ["current_umask", "private_to_shared", "make_temp_dir", "atomic_path", "atomic_write_text", "atomic_write_json", "atomic_dir", "remove_dir", "resolve_named_class", "import_object",
           "stable_hash", "parse_duration", "parse_bytes"]

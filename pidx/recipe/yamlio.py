"""Recipe files as YAML: reading (errors name file and line), composing (`extends`), `--set`
overrides, writing, and where each value came from."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import RecipeError


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise RecipeError(f"--set needs key.path=value, got {item!r}")
    key, _, text = item.partition("=")
    try:
        value = yaml_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return [k for k in key.strip().split(".") if k], value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides to a raw recipe dict (a copy)."""
    raw = copy.deepcopy(raw or {})
    for item in overrides:
        keys, value = parse_override(item)
        if not keys:
            raise RecipeError(f"--set needs a key path, got {item!r}")
        node = raw
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, list):
                try:
                    node = node[int(key)]
                except (ValueError, IndexError):
                    raise RecipeError(f"--set {item}: '{'.'.join(keys[:i + 1])}' is not an index of the list") from None
                continue
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            if not isinstance(nxt, (dict, list)):
                raise RecipeError(f"--set {item}: '{'.'.join(keys[:i + 1])}' is a value, not a section")
            node = nxt
        if isinstance(node, list):
            raise RecipeError(f"--set {item}: cannot replace a list element by index here")
        node[keys[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}:{where}: YAML syntax error: {problem}") from None
    return raw if raw is not None else {}


EXTENDS = "extends"


def merge(base: dict, top: dict, sources: dict, source: str, path: tuple = ()) -> dict:
    """`top` over `base`: mappings merge key by key, anything else (values, lists) is replaced whole.
    `sources` maps each key path set by `top` to `source`."""
    out = dict(base)
    for key, value in top.items():
        where = path + (str(key),)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merge(out[key], value, sources, source, where)
        else:
            out[key] = copy.deepcopy(value)
            for stale in [k for k in sources if k[:len(where)] == where]:
                del sources[stale]
            _mark(value, sources, source, where)
    return out


def _mark(value, sources: dict, source: str, path: tuple) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _mark(v, sources, source, path + (str(k),))
    else:
        sources[path] = source


def read_composed(path: str | Path, sources: dict | None = None, _chain: tuple = ()) -> dict:
    """A recipe file with what it `extends` (a path or a list of paths, relative to the file) merged
    underneath, in order; `sources` (key path → file) records where each value came from."""
    path = Path(path)
    sources = {} if sources is None else sources
    if path.resolve() in _chain:
        raise RecipeError(f"{path}: extends itself (through {' → '.join(str(p) for p in _chain)})")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    parents = raw.pop(EXTENDS, [])
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise RecipeError(f"{path}: '{EXTENDS}' must be a recipe path or a list of them, got {parents!r}")
    merged: dict = {}
    for parent in parents:
        target = path.parent / parent
        if not target.is_file():
            raise RecipeError(f"{path}: '{EXTENDS}: {parent}' names no file ({target} not found)")
        merged = _merge_composed(merged, target, sources, _chain + (path.resolve(),))
    return merge(merged, raw, sources, str(path))


def _merge_composed(merged: dict, path: Path, sources: dict, chain: tuple = ()) -> dict:
    """`merged` with the composed recipe `path` over it; each value keeps its own file as its source,
    not the file that brought it in."""
    own: dict = {}
    merged = merge(merged, read_composed(path, own, chain), sources, str(path))
    sources.update(own)
    return merged


def read_recipes(paths, overrides=(), sources: dict | None = None) -> dict:
    """Several recipe files merged in order (each with what it extends), then `--set` overrides."""
    sources = {} if sources is None else sources
    merged: dict = {}
    for path in paths:
        merged = _merge_composed(merged, Path(path), sources)
    merged = apply_overrides(merged, list(overrides))
    for item in overrides:
        keys, _ = parse_override(item)
        for stale in [k for k in sources if k[:len(keys)] == tuple(keys)]:
            del sources[stale]
        sources[tuple(keys)] = f"--set {item}"
    return merged


def annotate(data: dict, sources: dict) -> str:
    """`data` as block YAML, one line per value, each followed by `# <source>`: the file, `--set …` or
    `default` it came from (`sources`: key path → source). Values that are lists or mappings set as
    one are written inline."""
    def flow(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...")

    def lines(node: dict, path: tuple, indent: str):
        for key, value in node.items():
            where = path + (str(key),)
            if isinstance(value, dict) and value and where not in sources:
                yield f"{indent}{key}:"
                yield from lines(value, where, indent + "  ")
            else:
                yield f"{indent}{key}: {flow(value)}  # {_source_of(where, sources)}"

    return "\n".join(lines(data, (), "")) + "\n"


def _source_of(path: tuple, sources: dict) -> str:
    """Where the value at `path` came from: its own source, an enclosing value's, or (a mapping written
    on one line) the sources of what was set inside it; `default` when none."""
    if path in sources:
        return sources[path]
    outer = next((v for k, v in sources.items() if path[:len(k)] == k), None)
    inner = sorted({v for k, v in sources.items() if k[:len(path)] == path})
    return outer or ", ".join(inner) or "default"


def dump_yaml(data: dict, *, width: float = 80) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=width)


__all__ = ["yaml_load", "parse_override", "apply_overrides", "read_yaml", "dump_yaml", "EXTENDS", "merge",
           "read_composed", "read_recipes", "annotate"]

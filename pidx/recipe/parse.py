"""YAML recipes → a validated, typed `Recipe` (the one place recipes are checked).

A recipe has the sections `seed`, `name`, `description`, `data`, `model`, `loss`,
`optimizer`, `trainer`, `callbacks` and `evaluation` (`pidx.recipe.sections`). Every key
is checked: an unknown key is an error with a did-you-mean, a wrong type names the key
path and the expected type, a YAML syntax error names the file and line. `--set a.b=c`
overrides are applied before validation (values parsed as YAML: `5`, `1e-3`, `true`,
`[0.7, 1.5]`). Values the library rejects (a simulator parameter out of range, an
unknown activation) are reported here with their key path, before anything runs.

The resolved recipe (all defaults filled in) is what runs, what is written to the run
directory and what every checkpoint carries. See docs/recipes.md for every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from ..data.datamodule import resolve_momentum_range
from ..simulation import SimulatorConfig
from ..errors import PidxError, RecipeError
from ..evaluation.working_points import WorkingPoint
from ..models.base import ACTIVATIONS, resolve_model_class
from ..models.embeddings import group_embedding
from ..training.callbacks import Callback
from ..training.registry import BUILTIN_CALLBACKS
from ..training.losses import LOSSES, compute_class_weights, make_loss
from ..training.posterior import abundances
from ..utils import resolve_named_class
from .objective import objective_class
from .sections import (SIMULATOR_KEYS, CallbackSpec, DataSection, ExtraGroup, LossSection, ModelSection, Recipe,
                       yaml_form)
from .yamlio import annotate, dump_yaml, read_recipes

_NUMBER = (int, float)


def _describe(tp) -> str:
    """What a value of type `tp` looks like, in the words of an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or null)" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {str: "a list of strings", float: "a list of numbers"}.get(args[0], "a list")
        return f"a list of {len(args)} numbers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, "a mapping")


def _convert(tp, value, where: str):
    """`value` (from YAML) as type `tp`, or a RecipeError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"'{where}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for alternative in (a for a in args if a is not type(None)):
            try:
                return _convert(alternative, value, where)
            except RecipeError:
                continue
    elif origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) == len(args):
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    elif origin is dict and isinstance(value, dict):
        return dict(value)
    elif dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    elif tp is bool and isinstance(value, bool):
        return value
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp is float and isinstance(value, _NUMBER) and not isinstance(value, bool):
        return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise RecipeError(f"'{where}' must be {_describe(tp)}, got {value!r} ({type(value).__name__})")


def _key_paths(cls=Recipe, prefix: str = "") -> list[str]:
    """Every key path a recipe may set (`data.selection.vz_max`, `data.n_tracks`, ...)."""
    out = []
    for f in dataclasses.fields(cls):
        if cls is DataSection and f.name == "simulator":
            out += [f"{prefix}{k}" for k in SIMULATOR_KEYS]
            continue
        out.append(f"{prefix}{f.name}")
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _key_paths(tp, f"{prefix}{f.name}.")
    return out


def _unknown(key: str, path: str, known) -> RecipeError:
    """An unknown key: suggest the same key in another section first (`drop_unknown_pdg` at the top is
    `data.drop_unknown_pdg`), then a close key of this section, then a close key anywhere."""
    where = f"{path}.{key}" if path else key
    elsewhere = [p for p in _key_paths() if p.rsplit(".", 1)[-1] == key and p != where]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    if not elsewhere and not close:
        leaves = {p.rsplit(".", 1)[-1]: p for p in reversed(_key_paths())}
        elsewhere = [leaves[m] for m in difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.7)]
    suggestion = elsewhere[0] if elsewhere else (f"{path}.{close[0]}" if path else close[0]) if close else None
    hint = f"; did you mean '{suggestion}'?" if suggestion else ""
    return RecipeError(f"unknown key '{where}'{hint} (known keys{' of ' + path if path else ''}: "
                       f"{', '.join(sorted(known))})")


def _mapping(raw, path: str) -> dict:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise RecipeError(f"'{path}' must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


def _build(cls, raw, path: str, *, special: dict | None = None):
    """A `cls` dataclass from the mapping `raw`, each value converted to its field's type."""
    raw, hints = _mapping(raw, path), typing.get_type_hints(cls)
    special = special or {}
    known = [f.name for f in dataclasses.fields(cls) if f.name not in special]
    values = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key in special:
            values[key] = special[key](value, where)
        elif key in known:
            values[key] = _convert(hints[key], value, where)
        else:
            raise _unknown(str(key), path, [f.name for f in dataclasses.fields(cls)])
    return cls(**values)


def _build_data(raw, path: str) -> DataSection:
    raw = _mapping(raw, path)
    sim_raw = {k: v for k, v in raw.items() if k in SIMULATOR_KEYS}
    own = {k: v for k, v in raw.items() if k not in SIMULATOR_KEYS}
    own_fields = [f.name for f in dataclasses.fields(DataSection) if f.name != "simulator"]
    for key in own:
        if key not in own_fields:
            raise _unknown(str(key), path, own_fields + list(SIMULATOR_KEYS))
    hints = typing.get_type_hints(SimulatorConfig)
    sim = {SIMULATOR_KEYS[k]: _convert(hints[SIMULATOR_KEYS[k]], v, f"{path}.{k}") for k, v in sim_raw.items()}
    groups = own.pop("extra_groups", None) or []
    if not isinstance(groups, list):
        raise RecipeError(f"'{path}.extra_groups' must be a list of {{name, columns, flag}}, got {groups!r}")
    data = _build(DataSection, own, path)
    layout = "o2" if data.layout == "auto" else data.layout  # the simulator writes the layout data.layout asks for
    try:
        simulator = dataclasses.replace(DataSection().simulator, **sim, layout=layout)
    except PidxError as exc:
        raise RecipeError(f"'{path}': {exc}") from None
    if data.extra_inputs and data.layout == "legacy":
        raise RecipeError(f"'{path}.extra_inputs' needs the o2 layout (the legacy layout has no ITS cluster sizes or "
                          "centrality); remove it or set data.layout to o2 or auto")
    if len(set(data.extra_inputs)) != len(data.extra_inputs):
        raise RecipeError(f"'{path}.extra_inputs' names an input twice: {list(data.extra_inputs)}")
    if not data.clip > 0:
        raise RecipeError(f"'{path}.clip' must be > 0, got {data.clip}")
    if data.knee is not None and not 0 < data.knee <= data.clip:
        raise RecipeError(f"'{path}.knee' must be null or in (0, clip = {data.clip}], got {data.knee}")
    try:
        resolve_momentum_range(data.momentum_range)
    except PidxError as exc:
        raise RecipeError(f"'{path}.momentum_range': {exc}") from None
    return dataclasses.replace(data, simulator=simulator,
                               extra_groups=tuple(_build(ExtraGroup, g, f"{path}.extra_groups[{i}]")
                                                  for i, g in enumerate(groups)))


def _check_kwargs(cls: type, kwargs: dict, path: str,
                  skip=("self", "layout", "key", "num_classes")) -> None:
    """Every key must be a keyword of `cls.__init__`."""
    params = inspect.signature(cls.__init__).parameters
    known = [k for k, p in params.items() if k not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in known:
            raise _unknown(key, path, known)


def _build_model(raw, path: str) -> ModelSection:
    params = dict(_mapping(raw, path))
    name = _convert(str, params.pop("name", ModelSection.name), f"{path}.name")
    try:
        cls = resolve_model_class(name)
    except ValueError as exc:
        raise RecipeError(f"'{path}.name': {exc}") from None
    _check_kwargs(cls, params, path)
    act = params.get("activation")
    if act is not None and act not in ACTIVATIONS:
        raise RecipeError(f"'{path}.activation' must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if params.get("group_embedding") is not None:
        try:
            group_embedding(_convert(str, params["group_embedding"], f"{path}.group_embedding"))
        except ValueError as exc:
            raise RecipeError(f"'{path}.group_embedding': {exc}") from None
    return ModelSection(name, params)


def callback_class(name: str, where: str = "callbacks") -> type:
    """A built-in callback name or a `package.module:Class` import path."""
    try:
        return resolve_named_class(name, BUILTIN_CALLBACKS, Callback, kind="callback")
    except ValueError as exc:
        raise RecipeError(f"'{where}': {exc}") from None


def _build_callbacks(entries, path: str) -> tuple[CallbackSpec, ...]:
    if not isinstance(entries, list):
        raise RecipeError(f"'{path}' must be a list, got {type(entries).__name__}")
    out = []
    for i, entry in enumerate(entries):
        entry = {entry: {}} if isinstance(entry, str) else entry
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise RecipeError(f"'{path}[{i}]' must be a name or {{Name: {{args}}}}, got {entry!r}")
        (name, args), = entry.items()
        args = args or {}
        if not isinstance(args, dict):
            raise RecipeError(f"'{path}[{i}].{name}' arguments must be a mapping, got {args!r}")
        _check_kwargs(callback_class(str(name), f"{path}[{i}]"), args, f"{path}[{i}].{name}", skip=("self",))
        out.append(CallbackSpec(str(name), dict(args)))
    return tuple(out)


def _check_objective(recipe: Recipe) -> None:
    loss = recipe.loss
    if loss.name not in LOSSES:
        _check_kwargs(objective_class(loss.name), loss.params, "loss.params", skip=("self",))
        if loss.adaptation != "none":
            raise RecipeError(f"'loss.adaptation' is {loss.adaptation!r}, but loss.name names an objective of its "
                              f"own ({loss.name}); adapt inside it, or set loss.adaptation to none")
    elif loss.params:
        raise RecipeError(f"'loss.params' sets {sorted(loss.params)}, but {loss.name!r} takes none (they are "
                          "for an objective named by import path)")
    if loss.adaptation != "none" and recipe.data.target is None:
        raise RecipeError(f"'loss.adaptation: {loss.adaptation}' adapts to unlabelled data: set data.target to "
                          "its file, directory or glob")
    if not loss.adaptation_weight >= 0:
        raise RecipeError(f"'loss.adaptation_weight' must be >= 0, got {loss.adaptation_weight}")
    if not loss.reweight_clip > 1:
        raise RecipeError(f"'loss.reweight_clip' must be > 1, got {loss.reweight_clip}")


def _check_values(recipe: Recipe) -> None:
    """Values that only the library can judge, reported with their key path."""
    try:
        compute_class_weights(recipe.loss.class_weights, [1, 1, 1, 1])
    except ValueError as exc:
        raise RecipeError(f"'loss.class_weights': {exc}") from None
    try:
        if recipe.loss.name == "focal":
            make_loss("focal", gamma=recipe.loss.gamma, alpha=recipe.loss.alpha)
    except ValueError as exc:
        raise RecipeError(f"'loss': {exc}") from None
    _check_objective(recipe)
    if recipe.evaluation.priors is not None:
        try:
            abundances(recipe.evaluation.priors)
        except ValueError as exc:
            raise RecipeError(f"'evaluation.priors': {exc}") from None
    for i, text in enumerate(recipe.evaluation.working_points):
        try:
            WorkingPoint.parse(text)
        except ValueError as exc:
            raise RecipeError(f"'evaluation.working_points[{i}]': {exc}") from None
    for key, low in (("trainer.ensemble", 1), ("evaluation.calibration_bins", 2), ("trainer.max_epochs", 1),
                     ("trainer.batch_size", 1)):
        section, name = key.split(".")
        if getattr(getattr(recipe, section), name) < low:
            raise RecipeError(f"'{key}' must be >= {low}, got {getattr(getattr(recipe, section), name)}")
    o = recipe.optimizer
    if o.schedule == "warmup_cosine" and not 0 <= o.warmup_epochs < recipe.trainer.max_epochs:
        # the warm-up must leave at least one epoch of cosine decay
        raise RecipeError(f"'optimizer.warmup_epochs' must be >= 0 and < trainer.max_epochs "
                          f"({recipe.trainer.max_epochs}) for warmup_cosine, got {o.warmup_epochs}")


def validate_recipe(raw: dict | None, *, name: str | None = None) -> Recipe:
    """Validate a raw recipe mapping (as read from YAML) into a `Recipe`, every default filled in."""
    if raw is not None and not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(raw).__name__}")
    recipe = _build(Recipe, raw or {}, "", special={"data": _build_data, "model": _build_model,
                                                    "callbacks": _build_callbacks})
    _check_values(recipe)
    return recipe if recipe.name is not None else recipe.replace(name=name or "recipe")


def load_recipe(path, overrides: list[str] = (), *, sources: dict | None = None) -> Recipe:
    """Read, compose, override and validate a recipe; errors name the file.

    **Arguments:**

    - `path`: a recipe file, or several merged in order (LightningCLI's `--config` habit); each may
      `extends:` other files (merged underneath it). The run is named after the first file.
    - `overrides`: `--set key.path=value` items, applied last.
    - `sources`: if given, filled with where each value came from (key path → file or `--set`).
    """
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    if not paths:
        raise RecipeError("no recipe given")
    sources = {} if sources is None else sources
    raw = read_recipes(paths, list(overrides), sources)
    sources.setdefault(("name",), f"the name of {paths[0]}")
    try:
        return validate_recipe(raw, name=paths[0].stem)
    except RecipeError as exc:
        raise RecipeError(f"{paths[-1] if len(paths) == 1 else ' + '.join(map(str, paths))}: {exc}") from None


def annotated_recipe(recipe: Recipe, sources: dict) -> str:
    """The resolved recipe's YAML with `# <file>`, `# --set …` or `# default` after every value."""
    return annotate(recipe.to_dict(), sources)


def dump_recipe(recipe: Recipe) -> str:
    """The YAML text of a resolved recipe (what `recipe.yaml` holds)."""
    return dump_yaml(recipe.to_dict())


def _sim_help() -> dict[str, str]:
    """Per-field help from SimulatorConfig's docstring (`- `a`, `b`: text` lines)."""
    helps, names, text = {}, [], []
    for line in (SimulatorConfig.__doc__ or "").splitlines() + ["- "]:
        line = line.strip()
        if line.startswith("- "):
            for n in names:
                helps[n] = "simulator: " + " ".join(text)
            head, _, rest = line[2:].partition(":")
            names, text = re.findall(r"`(\w+)`", head), [rest.strip()]
        elif line and names:
            text.append(line)
    helps["tof_plateau"] = "simulator: TOF matching plateau; overrides the one of `tof_scenario`"
    helps["n_tracks"] = "simulated tracks before the momentum cut"
    helps["seed"] = "seed of the simulation (shared by recipes)"
    return helps


def reference_markdown() -> str:
    """The table of every recipe key (docs/recipes.md embeds it; a test keeps them equal)."""
    rows = []
    sim_help, sim_hints, sim_default = _sim_help(), typing.get_type_hints(SimulatorConfig), DataSection().simulator

    def cell(tp, default, text):
        default = "–" if default is None else f"`{json.dumps(default)}`"
        return _describe(tp), default, text.replace("|", "\\|")

    def walk(cls, path):
        hints, instance = typing.get_type_hints(cls), cls()
        for f in dataclasses.fields(cls):
            where, value = f"{path}.{f.name}" if path else f.name, getattr(instance, f.name)
            if cls is DataSection and f.name == "simulator":
                for key, attr in SIMULATOR_KEYS.items():
                    rows.append((f"`{path}.{key}`", *cell(sim_hints[attr], yaml_form(getattr(sim_default, attr)),
                                                          sim_help.get(attr, "simulator parameter"))))
            elif cls is ModelSection and f.name == "params":
                rows.append((f"{path}.<argument>", "any", "–", "keyword arguments of the model class"))
            elif cls is LossSection and f.name == "params":
                rows.append((f"`{where}`", "mapping", "`{}`", f.metadata.get("help", "")))
            elif dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], where)
            else:
                rows.append((f"`{where}`", *cell(hints[f.name], yaml_form(value), f.metadata.get("help", ""))))

    walk(Recipe, "")
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {k} | {t} | {d} | {h} |" for k, t, d, h in rows]
    return "\n".join(lines) + "\n"


__all__ = ["validate_recipe", "load_recipe", "annotated_recipe", "dump_recipe", "callback_class", "reference_markdown"]

"""YAML recipes → validated, fully resolved configuration dicts.

A recipe has the sections `seed`, `name`, `description`, `data`, `model`, `loss`,
`optimizer`, `trainer` and `callbacks`. Every key is checked: an unknown key is an
error with a did-you-mean, a wrong type names the key path and the expected type, a
YAML syntax error names the file and line. `--set a.b=c` overrides are applied before
validation (values parsed as YAML: `5`, `1e-3`, `true`, `[0.7, 1.5]`).

The resolved recipe (all defaults filled in) is what runs, what is written to the run
directory and what every checkpoint carries. See docs/recipes.md for every key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError


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


@dataclasses.dataclass(frozen=True)
class Field:
    kind: str  # int, float, bool, str, float_list, range, any, str_or_float_list
    default: Any = None
    choices: tuple | None = None
    help: str = ""


def _sim_help() -> dict[str, str]:
    """Per-field help from SimulatorConfig's docstring (`- `a`, `b`: text` lines)."""
    from .data.simulate import SimulatorConfig

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
    return helps


def _sim_fields() -> dict[str, Field]:
    from .data.simulate import SimulatorConfig

    helps = _sim_help()
    out = {}
    for f in dataclasses.fields(SimulatorConfig):
        if f.name in ("n_tracks", "seed", "layout"):  # layout: data.layout decides what the simulator writes
            continue
        kind = {int: "int", float: "float", str: "str", bool: "bool"}.get(type(f.default), "float_list")
        if f.name == "tof_plateau":
            kind = "float"
        if f.name == "tof_scenario":
            out[f.name] = Field("str", f.default, ("run3", "seed_scarce"), helps.get(f.name, ""))
            continue
        out[f.name] = Field(kind, list(f.default) if isinstance(f.default, tuple) else f.default,
                            help=helps.get(f.name, "simulator parameter"))
    return out


def spec() -> dict:
    """The recipe schema: nested dicts of `Field`s (model and callback arguments are
    checked against the constructor signatures)."""
    return {
        "seed": Field("int", 231, help="seed of the split, the initialisation and training"),
        "name": Field("str", None, help="run name (default: the recipe file name)"),
        "description": Field("str", "", help="one line shown by `pidx recipes`"),
        "data": {
            "source": Field("str", "simulate", help="'simulate', or a ROOT/CSV/Parquet file, a directory or a glob "
                            "of them"),
            "layout": Field("str", "auto", ("auto", "o2", "legacy"), "file layout: o2 (the pid_features tree of "
                            "O2Physics' extractor), legacy (the seed's 21 columns) or auto (detected from the "
                            "columns; the simulator writes o2)"),
            "tree": Field("str", "pid_features", help="TTree read from ROOT files"),
            "primaries_only": Field("bool", False, help="keep MC physical primaries only (mcIsPhysicalPrimary)"),
            "selection": {
                "vz_max": Field("float", None, help="DPG cut |vz| < value (cm); applied before the momentum range"),
                "eta_max": Field("float", None, help="DPG cut |eta| < value"),
                "dca_xy_max": Field("float", None, help="DPG cut |DCAxy| < value (cm)"),
                "dca_z_max": Field("float", None, help="DPG cut |DCAz| < value (cm)"),
                "min_tpc_clusters": Field("int", None, help="DPG cut tpcNClsFound >= value"),
                "min_its_clusters": Field("int", None, help="DPG cut: ITS layers with a cluster >= value"),
            },
            "n_tracks": Field("int", 4_160_000, help="simulated tracks before the momentum cut"),
            "simulation_seed": Field("int", 231, help="seed of the simulation (shared by recipes)"),
            "momentum_range": Field("range", "full", help="full (p > 0.1), mid (0.7-1.5), high (1-3 GeV/c) "
                                    "or [low, high]"),
            "momentum_variable": Field("str", "p", ("p", "pt"), "select on total momentum p = pT cosh(eta) or on pT"),
            "test_fraction": Field("float", 0.2, help="share of the selected tracks held out for testing"),
            "val_fraction": Field("float", 0.1, help="share carved from the training part for validation"),
            "sentinels": Field("float_list", [-999.0], help="values meaning 'missing' besides NaN"),
            "drop_unknown_pdg": Field("bool", False, help="drop rows with PDG codes other than pi, K, p, e "
                                      "(counted) instead of failing"),
            "on_invalid": Field("str", "error", ("error", "drop"), "rows whose flag says present but whose "
                                "values are NaN/inf/sentinel"),
            "clip": Field("float", 20.0, help="robust-scaled features are clipped to [-clip, clip]"),
            "cache": Field("bool", True, help="cache simulated tables on disk"),
            "extra_groups": Field("any", [], help="list of {name, columns, flag} detector groups"),
            **_sim_fields(),
        },
        "model": {"name": Field("str", "fse_phase1", help="simplenn, dnn, fse_phase0, fse_phase1 or "
                                "package.module:Class"), "*": Field("any")},
        "loss": {
            "name": Field("str", "focal", ("focal", "cross_entropy")),
            "gamma": Field("float", 2.0, help="focal loss focusing parameter"),
            "alpha": Field("str_or_float_list", 0.25, help="focal loss alpha: a number or one per class"),
            "class_weights": Field("str_or_float_list", "balanced", help="'balanced', 'none' or [w_pi, w_ka, "
                                   "w_pr, w_el], from the train split"),
        },
        "optimizer": {
            "name": Field("str", "adam", ("adam", "adamw", "sgd")),
            "learning_rate": Field("float", 1e-3, help="peak learning rate"),
            "weight_decay": Field("float", 0.0, help="adamw only"),
            "grad_clip_norm": Field("float", None, help="clip gradients to this global norm"),
            "schedule": Field("str", "constant", ("constant", "cosine", "warmup_cosine"),
                              "learning-rate schedule over max_epochs"),
            "warmup_epochs": Field("int", 0, help="linear warm-up length for warmup_cosine"),
        },
        "trainer": {
            "max_epochs": Field("int", 150),
            "batch_size": Field("int", 1024),
            "log_every_n_steps": Field("int", 50, help="chunk of steps per on-device scan when a callback "
                                       "wants on_train_batch_end"),
            "eval_batch_size": Field("int", 65536, help="batch of validation, test and predict"),
            "precision": Field("str", "f32", ("f32", "bf16"), "bf16: bf16 compute, f32 weights and loss"),
            "ensemble": Field("int", 1, help="members trained in one vmapped program (seeds seed, seed+1, ...); "
                              "1 = a single model"),
        },
        "callbacks": Field("any", [], help="list of Name or {Name: {args}}; Name is built-in or "
                           "package.module:Class"),
        "evaluation": {
            "baselines": Field("any", ["bayes_pid", "nsigma", "gbdt", "oracle"],
                               help="classic methods measured on the same test tracks"),
            "gbdt_max_iter": Field("int", 200),
            "report": Field("bool", True, help="write report/ at the end of `pidx fit`"),
            "report_max_tracks": Field("int", 20_000, help="tracks used for importance and ablation"),
            "calibration_bins": Field("int", 15, help="equal-width confidence bins of the ECE and reliability "
                                      "diagrams"),
            "temperature_scaling": Field("bool", False, help="fit a temperature on the validation split; test, "
                                         "predict and the report then use calibrated probabilities"),
        },
    }


# ----------------------------------------------------------------------------- checks
def _type_ok(kind: str, value) -> bool:
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None:
        return True
    return {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": num,
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "float_list": isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in value),
        "range": isinstance(value, str) or (isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)),
        "str_or_float_list": isinstance(value, str) or num or (isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)),
        "any": True,
    }[kind]


_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
              "float_list": "a list of numbers", "range": "a name (full, mid, high) or [low, high]",
              "str_or_float_list": "a name, a number or a list of numbers", "any": "anything"}


def _unknown(key: str, path: str, known) -> RecipeError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    where = f"{path}.{key}" if path else key
    return RecipeError(f"unknown key '{where}'{hint} (known keys{' of ' + path if path else ''}: "
                       f"{', '.join(sorted(k for k in known if k != '*'))})")


def _validate(section: dict, schema: dict, path: str) -> dict:
    if not isinstance(section, dict):
        raise RecipeError(f"'{path}' must be a mapping of keys to values, got {type(section).__name__}")
    out = {}
    for key, value in section.items():
        if key not in schema and "*" not in schema:
            raise _unknown(str(key), path, schema)
        field = schema.get(key, schema.get("*"))
        where = f"{path}.{key}" if path else str(key)
        if isinstance(field, dict):
            out[key] = _validate(value if value is not None else {}, field, where)
            continue
        if not _type_ok(field.kind, value):
            raise RecipeError(f"'{where}' must be {_KIND_TEXT[field.kind]}, got {value!r} ({type(value).__name__})")
        if field.choices and value not in field.choices:
            raise RecipeError(f"'{where}' must be one of {list(field.choices)}, got {value!r}")
        out[key] = float(value) if field.kind == "float" and value is not None else value
    for key, field in schema.items():
        if key == "*" or key in out:
            continue
        out[key] = _validate({}, field, f"{path}.{key}" if path else key) if isinstance(field, dict) \
            else copy.deepcopy(field.default)
    return out


def _check_kwargs(cls: type, kwargs: dict, path: str, skip=("self", "layout", "key", "num_classes")) -> None:
    """Every key must be a keyword of `cls.__init__` (following `**kwargs` to parents)."""
    params: dict = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        own = inspect.signature(klass.__init__).parameters
        params = {**own, **params}
        if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
            break
    known = [k for k, p in params.items() if k not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for key in kwargs:
        if key not in known:
            raise _unknown(key, path, known)


def resolve_callbacks(entries) -> list[tuple[str, dict]]:
    """Check `callbacks:` entries (names or import paths with argument mappings)."""
    if not isinstance(entries, list):
        raise RecipeError(f"'callbacks' must be a list, got {type(entries).__name__}")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise RecipeError(f"'callbacks[{i}]' must be a name or {{Name: {{args}}}}, got {entry!r}")
        (name, args), = entry.items()
        args = args or {}
        if not isinstance(args, dict):
            raise RecipeError(f"'callbacks[{i}].{name}' arguments must be a mapping, got {args!r}")
        cls = callback_class(name, f"callbacks[{i}]")
        _check_kwargs(cls, args, f"callbacks[{i}].{name}")
        out.append((name, dict(args)))
    return out


def callback_class(name: str, where: str = "callbacks"):
    """A built-in callback name or a `package.module:Class` import path."""
    from .training.callbacks import BUILTIN_CALLBACKS, Callback
    from .utils import resolve_named_class

    return resolve_named_class(name, BUILTIN_CALLBACKS, Callback, prefix=f"'{where}'", kind="callback")


def validate_recipe(raw: dict, *, name: str | None = None) -> dict:
    """Validate a recipe dict and fill in every default."""
    from .data.datamodule import resolve_momentum_range
    from .errors import DataError
    from .models.base import resolve_model_class

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(raw).__name__}")
    cfg = _validate(raw, spec(), "")
    model_cfg = dict(cfg["model"])
    cls = resolve_model_class(model_cfg.pop("name"))
    _check_kwargs(cls, model_cfg, "model")
    cfg["callbacks"] = [{n: a} for n, a in resolve_callbacks(cfg["callbacks"])]
    try:
        resolve_momentum_range(cfg["data"]["momentum_range"])
    except DataError as exc:
        raise RecipeError(f"'data.momentum_range': {exc}") from None
    for key, low in (("trainer.ensemble", 1), ("evaluation.calibration_bins", 2), ("trainer.max_epochs", 1),
                     ("trainer.batch_size", 1)):
        section, field = key.split(".")
        if cfg[section][field] < low:
            raise RecipeError(f"'{key}' must be >= {low}, got {cfg[section][field]}")
    if cfg["name"] is None:
        cfg["name"] = name or "recipe"
    return cfg


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


def load_recipe(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read, override and validate a recipe file; errors name the file."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), list(overrides))
    try:
        return validate_recipe(raw, name=path.stem)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def reference_markdown() -> str:
    """The table of every recipe key (docs/recipes.md embeds it; a test keeps them equal)."""
    rows = []

    def walk(node, path):
        for key, field in node.items():
            where = f"{path}.{key}" if path else key
            if isinstance(field, dict):
                walk(field, where)
            elif key == "*":
                rows.append((f"{path}.<argument>", "any", "–", "keyword arguments of the model class"))
            else:
                kind = _KIND_TEXT[field.kind] + (f", one of {', '.join(map(str, field.choices))}" if field.choices else "")
                default = "–" if field.default is None else f"`{json.dumps(field.default)}`"
                rows.append((f"`{where}`", kind, default, field.help))

    walk(spec(), "")
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {k} | {t} | {d} | {h.replace('|', chr(92) + '|')} |" for k, t, d, h in rows]
    return "\n".join(lines) + "\n"


def dump_recipe(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


__all__ = ["Field", "spec", "validate_recipe", "load_recipe", "apply_overrides", "parse_override", "read_yaml",
           "dump_recipe", "resolve_callbacks", "callback_class", "reference_markdown"]

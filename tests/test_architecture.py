"""The architecture's rules, checked on the source: one-way layers, no cycles, small modules,
final models, and a `pidx fit` that writes metrics.json once and never reads its own files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import pidx

PACKAGE = Path(pidx.__file__).parent
# data → simulation → models → training → evaluation → export → recipe → runs → cli; errors, utils, _version
# underneath. The simulator writes the layouts data defines; data reads it through a named source.
LAYERS = {"_version": 0, "errors": 0, "utils": 0, "data": 1, "simulation": 2, "models": 3, "training": 4,
          "evaluation": 5, "export": 6, "recipe": 7, "runs": 8, "cli": 9}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, source: str | None = None) -> set[str]:
    """Every pidx module `name` imports, at module level or inside functions."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pidx"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "pidx":
                target = node.module
            else:
                continue
            for alias in node.names:  # `from . import plots` imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


def layer(name: str) -> int:
    parts = name.split(".")
    return 10 if len(parts) == 1 else LAYERS[parts[1]]  # the package root re-exports everything


def test_every_module_has_a_layer():
    assert not [m for m in MODULES if m != "pidx" and m.split(".")[1] not in LAYERS]


def test_imports_follow_the_layer_order():
    wrong = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
             for m in MODULES for t in imports_of(m) if layer(t) > layer(m)]
    assert not wrong, "imports against data → simulation → models → ... → runs → cli:\n" + \
        "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = {m: {t for t in imports_of(m) if t in MODULES} for m in MODULES}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" → ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_check_sees_function_local_imports():
    source = MODULES["pidx.training.step"].read_text() + "\n\ndef _bad():\n    from ..runs import fit\n"
    found = imports_of("pidx.training.step", source)
    assert "pidx.runs.fit" in found and layer("pidx.runs.fit") > layer("pidx.training.step")


def test_no_module_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_models_are_abstract_or_final():
    import pidx.models as models

    concrete = [c for c in vars(models).values() if isinstance(c, type) and issubclass(c, models.PIDModel)
                and not models.base.is_abstract(c)]
    assert {c.__name__ for c in concrete} >= {"SimpleNN", "DNN", "FSEAttention", "DetectorAwareFSE"}
    assert models.base.is_abstract(models.PIDModel)
    for cls in concrete:  # fields and __init__ in the one concrete class
        assert "__init__" in vars(cls) and "forward" in vars(cls), cls
    with pytest.raises(TypeError, match="final"):
        class Doubled(models.SimpleNN):  # noqa: F841
            pass


def test_fit_writes_metrics_once_and_reads_none_of_its_files(tmp_path, monkeypatch):
    from pidx.recipe import validate_recipe
    from pidx.runs import RunDir, fit_recipe

    recipe = validate_recipe({
        "name": "once", "data": {"n_tracks": 6000, "momentum_range": "mid", "cache": False},
        "model": {"name": "simplenn", "hidden": [16], "dropout": 0.0},
        "trainer": {"max_epochs": 2, "batch_size": 256},
        "callbacks": [{"EarlyStopping": {"patience": 5}}, {"ModelCheckpoint": {}}],
        "evaluation": {"baselines": ["nsigma", "oracle"], "report_max_tracks": 500}})
    run = RunDir.create("once", tmp_path / "run")
    writes, reads = [], []
    real_atomic = pidx.utils.atomic_write_json
    monkeypatch.setattr("pidx.runs.rundir.atomic_write_json",
                        lambda path, obj: (writes.append(Path(path).name), real_atomic(path, obj))[1])
    for method in ("recipe", "metrics", "posterior_map", "history", "predictions", "best_checkpoint"):
        real = getattr(RunDir, method)
        monkeypatch.setattr(RunDir, method, lambda self, *a, _m=method, _r=real, **k: (reads.append(_m),
                                                                                     _r(self, *a, **k))[1])
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (
        reads.append(self.name) if self.resolve().is_relative_to(run.path.resolve()) else None,
        read_text(self, *a, **k))[1])
    metrics = fit_recipe(recipe, run, quiet=True)
    assert writes.count("metrics.json") == 1 and writes.count("calibration.json") == 1
    assert not reads, reads
    assert json.loads(read_text(run / "metrics.json")) == json.loads(json.dumps(metrics))
    assert (run / "report" / "report.md").is_file()


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_all_names_what_the_module_has(name):
    """`from module import *` must work: every name in `__all__` exists in the module."""
    import importlib

    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not define or import"

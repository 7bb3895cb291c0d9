"""What every benchmark that writes results shares: the caption's provenance and an atomic JSON write."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax

from pidx.utils import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def provenance(script: str, argv: list[str] | None = None) -> dict:
    """What a results table's caption says: the command, the commit, the device and the date.

    **Arguments:**

    - `script`: the benchmark's file name, e.g. `throughput.py`.
    - `argv`: its arguments (default: `sys.argv[1:]`); an `--out` and its value are left out of the command.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "--out" in args:
        i = args.index("--out")
        del args[i:i + 2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    device = jax.devices()[0]
    where = f"{device.device_kind} ({device.platform})" if device.platform != "cpu" else \
        f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    return {"command": " ".join(["python", f"benchmarks/{script}", *args]), "commit": commit, "device": where,
            "date": time.strftime("%Y-%m-%d")}


def write_result(out: Path | None, name: str, result: dict) -> None:
    """Write `result` as `out/<name>.json` (atomically) when `out` is given."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / f"{name}.json", result)
        print(f"wrote {out / f'{name}.json'}")


def fit_quietly(path: Path, overrides, directory: Path):
    """(recipe, metrics) of `pidx fit` on a recipe file: no baselines, no report (training is what is timed)."""
    from pidx.recipe import load_recipe
    from pidx.runs import RunDir, fit_recipe

    recipe = load_recipe(path, ["evaluation.baselines=[]", "evaluation.report=false", *overrides])
    return recipe, fit_recipe(recipe, RunDir.create(recipe.name, directory), quiet=True)

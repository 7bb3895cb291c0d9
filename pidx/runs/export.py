"""`pidx export`: a run's result as ONNX, or as the files O2Physics' `pid-onnx-inference` runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ExportError
from ..export.graph import extra_input_columns
from ..export.o2physics import (
    CONFIG_FILE, check_o2physics_inputs, join_bins, model_file_names, o2physics_bins, write_o2physics_config,
)
from ..export.writer import export_onnx
from ..utils import make_temp_dir
from .build import load_predictor
from .rundir import RunDir

TARGETS = ("onnx", "o2physics")


def export_run(run_dir: str | Path, output: str | Path, *, target: str = "onnx", tolerance: float = 1e-5,
               check: bool = True, priors=None) -> dict:
    """Export a run directory's model (preprocessing and posterior map included): the graph outputs
    posteriors under the training sample's abundances, or `priors` / the recipe's `evaluation.priors`.

    **Arguments:**

    - `run_dir`: the run.
    - `output`: `target="onnx"`: the .onnx file (a .json sidecar is written beside it);
      `target="o2physics"`: a directory that receives `pid_feature_model.onnx` and
      `pid-onnx-inference.json`, the configuration of O2Physics' `pid-onnx-inference` task.
    - `target`: `onnx` or `o2physics`.
    - `tolerance`, `check`: the ONNX Runtime check (see `pidx.export.export_onnx`).
    - `priors`: species abundances to re-weight the posteriors to (overrides the recipe's).
    """
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r}; accepted are {', '.join(TARGETS)}")
    if target == "o2physics":
        return export_o2physics([run_dir], output, tolerance=tolerance, check=check, priors=priors)
    recipe, predictor, ckpt = load_predictor(RunDir.open(run_dir), priors=priors, recipe_priors=True)
    path = Path(output)
    info = export_onnx(predictor.model, predictor.state, predictor.preprocessor, path,
                       sentinels=recipe.data.sentinels, metadata=_metadata(recipe, predictor, ckpt),
                       posterior=predictor.posterior, tolerance=tolerance, check=check)
    return {**info, "output": str(path), "target": target}


def _metadata(recipe, predictor, ckpt) -> dict:
    d = recipe.data
    return {"recipe": recipe.name, "model": recipe.model.name, "checkpoint": str(ckpt),
            "track_layout": predictor.preprocessor.track_layout, "momentum_range": d.momentum_range_yaml,
            "momentum_variable": d.momentum_variable,
            "note": "the model was trained on tracks inside momentum_range; apply the same selection"}


def export_o2physics(run_dirs, output: str | Path, *, tolerance: float = 1e-5, check: bool = True,
                     priors=None) -> dict:
    """The files `pid-onnx-inference` runs, from one run or from runs trained on adjacent pT windows.

    **Arguments:**

    - `run_dirs`: the runs; with several, one model per pT bin: their windows
      (`data.momentum_variable: pt`) must meet edge to edge, and every run must read the
      46-value vector of the o2 layout.
    - `output`: a directory; it receives one ONNX file per bin (`pid_feature_model.onnx` for
      one run, `pid_feature_model_ptbin<i>.onnx` in pT order for several) and
      `pid-onnx-inference.json` (`binsPtMl` and `onnxFileNames` in bin order).
    - `tolerance`, `check`, `priors`: as in `export_run`.

    Every model is built and checked before anything is written into `output`.
    """
    loaded = []
    for run_dir in run_dirs:
        recipe, predictor, ckpt = load_predictor(RunDir.open(run_dir), priors=priors, recipe_priors=True)
        pre, d = predictor.preprocessor, recipe.data
        try:
            check_o2physics_inputs(extra_input_columns(pre))
            window = o2physics_bins(pre.track_layout, d.momentum_range_yaml, d.momentum_variable)
        except ExportError as exc:
            raise ExportError(f"{run_dir}: {exc}") from None
        loaded.append((run_dir, recipe, predictor, ckpt, window))  # each reads exactly the 46 values (checked)
    bins, order = join_bins([(str(r), w) for r, _, _, _, w in loaded])
    names = model_file_names(len(loaded))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(".export-", output)
    try:
        models = []
        for name, i in zip(names, order):
            run_dir, recipe, predictor, ckpt, window = loaded[i]
            meta = {**_metadata(recipe, predictor, ckpt), "binsPtMl": bins, "pt_bin": window}
            info = export_onnx(predictor.model, predictor.state, predictor.preprocessor, staging / name,
                               sentinels=recipe.data.sentinels, metadata=meta, posterior=predictor.posterior,
                               tolerance=tolerance, check=check)
            models.append({**info, "run": str(run_dir), "output": str(output / name), "pt_bin": window})
        for name in names:  # every model checked: move them in, the configuration last
            for f in (name, Path(name).with_suffix(".json").name):
                os.replace(staging / f, output / f)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    config = write_o2physics_config(output, bins, names)
    return {**models[0], "target": "o2physics", "configuration": str(config), "binsPtMl": bins, "models": models,
            "output": str(output / names[0]) if len(names) == 1 else str(output)}


__all__ = ["TARGETS", "export_run", "export_o2physics", "CONFIG_FILE"]

"""`pidx export`: a run's result as ONNX, or as the files O2Physics' `pid-onnx-inference` runs."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError
from ..export.graph import extra_input_columns
from ..export.o2physics import MODEL_FILE, check_o2physics_inputs, o2physics_bins, write_o2physics_config
from ..export.writer import export_onnx
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
    recipe, predictor, ckpt = load_predictor(RunDir.open(run_dir), priors=priors, recipe_priors=True)
    d, pre = recipe.data, predictor.preprocessor
    momentum_range = d.momentum_range_yaml
    meta = {"recipe": recipe.name, "model": recipe.model.name, "checkpoint": str(ckpt),
            "track_layout": pre.track_layout, "momentum_range": momentum_range,
            "momentum_variable": d.momentum_variable,
            "note": "the model was trained on tracks inside momentum_range; apply the same selection"}
    path = Path(output)
    if target == "o2physics":
        check_o2physics_inputs(extra_input_columns(pre))
        bins = o2physics_bins(pre.track_layout, momentum_range, d.momentum_variable)
        meta["binsPtMl"] = bins
        path = Path(output) / MODEL_FILE
    info = export_onnx(predictor.model, predictor.state, pre, path, sentinels=d.sentinels, metadata=meta,
                       posterior=predictor.posterior, tolerance=tolerance, check=check)
    info = {**info, "output": str(path), "target": target}
    if target == "o2physics":
        info["configuration"] = str(write_o2physics_config(Path(output), bins))
    return info


__all__ = ["TARGETS", "export_run"]

"""The O2Physics target: the files `pid-onnx-inference` (Tools/PIDFeatureExtractor/pidOnnxInference.cxx) runs.

The task builds the 46-value vector of `pidx.data.layouts.O2_VECTOR` for each track of a
`pid_features` tree, runs the model through `o2::analysis::MlResponse` (one input `[batch, 46]`,
the last output's first 4 values read as π, K, p, e) and bins models in pT (`binsPtMl`): a track
outside every bin is a fatal error, so a model trained on a momentum window in p cannot be
deployed there as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ExportError
from ..utils import atomic_write_json

MODEL_FILE = "pid_feature_model.onnx"
CONFIG_FILE = "pid-onnx-inference.json"
TASK = "pid-onnx-inference"
ALL_PT = [-1.0, 9999.0]  # the task's default single bin: one model for all momenta


def check_o2physics_inputs(extra_columns) -> None:
    """pid-onnx-inference feeds exactly the 46-value vector: a model with more inputs cannot run there."""
    if extra_columns:
        raise ExportError(f"the model reads columns beyond the 46-value vector of {TASK} ({', '.join(extra_columns)}), "
                          "which the task cannot feed: export it to the "
                          "plain onnx target, whose inputs are the 46 values followed by those columns")


def o2physics_bins(track_layout: str, momentum_range, momentum_variable: str) -> list[float]:
    """`binsPtMl` for a run: one bin covering everything for a full-range model, the recipe's own
    window for a model trained on a pT window; anything else cannot run in pid-onnx-inference."""
    if track_layout != "o2":
        raise ExportError(f"the o2physics target needs a model trained on the o2 layout (the 46-value vector of "
                          f"pid-onnx-inference); this run used the {track_layout} layout: export it to the plain onnx target")
    if momentum_range == "full":
        return list(ALL_PT)
    if momentum_variable == "pt" and isinstance(momentum_range, (list, tuple)):
        lo, hi = (float(v) for v in momentum_range)
        return [lo, hi if math.isfinite(hi) else ALL_PT[1]]
    raise ExportError(f"the model was trained on the momentum window {momentum_range} in {momentum_variable}; "
                      "pid-onnx-inference bins models in pT and stops at a track outside every bin, so it would "
                      "fail on tracks outside the window. Train with data.momentum_range: full, or with "
                      "data.momentum_variable: pt to export that pT bin")


def write_o2physics_config(directory: Path, bins: list[float]) -> Path:
    """`pid-onnx-inference.json` for `--configuration json://…`: the local model, its pT bins, every group on."""
    config = {TASK: {
        "inputRootFile": "pid_features.root", "inputTreeName": "pid_features", "outputPath": "pid_predictions",
        "exportCsv": False, "loadModelFromCcdb": False, "onnxFileNames": [MODEL_FILE], "binsPtMl": list(bins),
        "nClassesMl": 4, "useTPC": True, "useTOF": True, "useTRD": True, "useITS": True, "useEMCal": True,
        "useHMPID": True, "useCentrality": True,
    }}
    return atomic_write_json(Path(directory) / CONFIG_FILE, config)


__all__ = ["check_o2physics_inputs", "MODEL_FILE", "CONFIG_FILE", "TASK", "o2physics_bins", "write_o2physics_config"]

"""The O2Physics target: the files `pid-onnx-inference` (Tools/PIDFeatureExtractor/pidOnnxInference.cxx) runs.

The task builds the 46-value vector of `pidx.data.layouts.O2_VECTOR` for each track of a
`pid_features` tree, runs the model through `o2::analysis::MlResponse` (one input `[batch, 46]`,
the last output's first 4 values read as π, K, p, e) and bins models in pT (`binsPtMl`, one
ONNX file per bin in `onnxFileNames`): a track outside every bin is a fatal error, so a model
trained on a momentum window in p cannot be deployed there as it is.

The configuration is read by O2's DPL from `--configuration json://FILE`: every option under the
task's name, each parsed as the C++ type of its `Configurable`, and every `std::vector` option
through a `values` level (`{"binsPtMl": {"values": [-1, 9999]}}`; AliceO2
`Framework/Core`: `ConfigParamRegistry::get` → `vectorFromBranch` → `get_child("values")`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExportError
from ..utils import atomic_write_json

MODEL_FILE = "pid_feature_model.onnx"
CONFIG_FILE = "pid-onnx-inference.json"
TASK = "pid-onnx-inference"
ALL_PT = [-1.0, 9999.0]  # the task's default single bin: one model for all momenta

# `struct PidOnnxInference`'s Configurables: option name → the C++ type DPL parses it as
TASK_CONFIGURABLES: dict[str, str] = {
    "inputRootFile": "std::string", "inputTreeName": "std::string", "outputPath": "std::string",
    "exportCsv": "bool", "loadModelFromCcdb": "bool", "ccdbUrl": "std::string",
    "modelPathsCcdb": "std::vector<std::string>", "timestampCcdb": "int64_t",
    "onnxFileNames": "std::vector<std::string>", "binsPtMl": "std::vector<double>", "nClassesMl": "int",
    "useTPC": "bool", "useTOF": "bool", "useTRD": "bool", "useITS": "bool", "useEMCal": "bool", "useHMPID": "bool",
    "useCentrality": "bool",
}
_SCALAR_CHECK = {
    "std::string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31,
    "int64_t": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63,
    "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
}
_VECTOR = "std::vector<"


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


def join_bins(windows: Sequence[tuple[str, Sequence[float]]]) -> tuple[list[float], list[int]]:
    """One `binsPtMl` from several models' pT windows: (edges, the models' order along pT).

    **Arguments:**

    - `windows`: per model, its name (for messages) and its `[low, high]` pT window.

    The windows must tile one pT range: sorted by their low edge, each must start where the
    previous one ends (a gap would be a fatal error of the task for tracks in it, an overlap
    a bin two models claim).
    """
    if len(windows) == 1:
        return [float(v) for v in windows[0][1]], [0]
    order = sorted(range(len(windows)), key=lambda i: float(windows[i][1][0]))
    edges = [float(windows[order[0]][1][0])]
    for prev, cur in zip(order, order[1:]):
        (pname, (_, phi)), (cname, (clo, _)) = windows[prev], windows[cur]
        if float(clo) > float(phi):
            raise ExportError(f"{pname} ends at pT = {phi:g} GeV/c and {cname} starts at {clo:g}: tracks in the gap "
                              f"would stop {TASK}; the models' pT windows must tile one range")
        if float(clo) < float(phi):
            raise ExportError(f"{pname} (pT up to {phi:g}) and {cname} (from {clo:g}) overlap; each pT bin of "
                              f"{TASK} runs exactly one model, so the windows must meet edge to edge")
        edges.append(float(phi))
    edges.append(float(windows[order[-1]][1][1]))
    return edges, order


def model_file_names(n_models: int) -> list[str]:
    """The ONNX file of each pT bin: the task's default name for one model, numbered for several."""
    if n_models == 1:
        return [MODEL_FILE]
    stem = Path(MODEL_FILE).stem
    return [f"{stem}_ptbin{i}.onnx" for i in range(n_models)]


def o2physics_config(bins: Sequence[float], onnx_files: Sequence[str]) -> dict:
    """The task's options for local models, one per pT bin, every detector group on; checked
    against the task's Configurable declarations (`check_o2physics_config`)."""
    if len(onnx_files) != len(bins) - 1:
        raise ExportError(f"{len(bins) - 1} pT bins need as many ONNX files, got {len(onnx_files)} "
                          "(MlResponse::setModelPathsLocal stops otherwise)")
    options = {
        "inputRootFile": "pid_features.root", "inputTreeName": "pid_features", "outputPath": "pid_predictions",
        "exportCsv": False, "loadModelFromCcdb": False, "onnxFileNames": list(onnx_files),
        "binsPtMl": [float(b) for b in bins], "nClassesMl": 4, "useTPC": True, "useTOF": True, "useTRD": True,
        "useITS": True, "useEMCal": True, "useHMPID": True, "useCentrality": True,
    }
    config = {TASK: {k: ({"values": v} if TASK_CONFIGURABLES[k].startswith(_VECTOR) else v)
                     for k, v in options.items()}}
    check_o2physics_config(config)
    return config


def check_o2physics_config(config: dict) -> None:
    """Every option of `config[TASK]` is a Configurable of the task with a value of its C++ type
    (vectors as `{"values": [...]}`), and the pT bins increase; an `ExportError` names the option."""
    options = config.get(TASK)
    if not isinstance(options, dict):
        raise ExportError(f"the configuration has no '{TASK}' section")
    for key, value in options.items():
        ctype = TASK_CONFIGURABLES.get(key)
        if ctype is None:
            raise ExportError(f"'{key}' is not an option of {TASK}; its options are {', '.join(TASK_CONFIGURABLES)}")
        if ctype.startswith(_VECTOR):
            element = ctype[len(_VECTOR):-1]
            if not (isinstance(value, dict) and set(value) == {"values"} and isinstance(value["values"], list)):
                raise ExportError(f"'{key}' is a {ctype}: DPL reads it as {{\"values\": [...]}}, got {value!r}")
            bad = [v for v in value["values"] if not _SCALAR_CHECK[element](v)]
            if bad:
                raise ExportError(f"'{key}' holds {bad[0]!r}, which is not a {element}")
        elif not _SCALAR_CHECK[ctype](value):
            raise ExportError(f"'{key}' is a {ctype}, got {value!r}")
    edges = options.get("binsPtMl", {}).get("values", ALL_PT)
    if len(edges) < 2 or any(b >= a for a, b in zip(edges[1:], edges)):
        raise ExportError(f"'binsPtMl' must be at least two increasing edges, got {edges}")


def write_o2physics_config(directory: Path, bins: Sequence[float],
                           onnx_files: Sequence[str] = (MODEL_FILE,)) -> Path:
    """`pid-onnx-inference.json` for `--configuration json://…`: the local models, their pT bins."""
    return atomic_write_json(Path(directory) / CONFIG_FILE, o2physics_config(bins, onnx_files))


__all__ = ["check_o2physics_inputs", "MODEL_FILE", "CONFIG_FILE", "TASK", "TASK_CONFIGURABLES", "o2physics_bins",
           "join_bins", "model_file_names", "o2physics_config", "check_o2physics_config", "write_o2physics_config"]

"""Build, check and write the ONNX file of a model (a run directory's: `pidx.runs.export_run`).

```python
from pidx.export import export_onnx
info = export_onnx(model, state, preprocessor, "fse_phase1_mid.onnx")
# writes fse_phase1_mid.onnx and fse_phase1_mid.json (input columns, class order, version, ...)
```
Every export is checked before it is written: ONNX Runtime and pidx predict the same
synthetic tracks (every detector-availability pattern, NaN and sentinel encodings);
a difference above `tolerance` is an `ExportError` and nothing is written.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.io import validate_tracks
from ..data.layouts import PLAUSIBLE_RANGES
from ..data.schema import BAYES_FLAG, CLASS_NAMES, PROB_COLUMNS
from ..errors import ExportError
from ..models.ensemble import is_ensemble
from ..training.posterior import PosteriorMap
from ..training.predictor import Predictor
from ..utils import atomic_path, atomic_write_json
from .graph import OPSET, GraphBuilder, _onnx, input_columns, preprocessing_graph
from .onnx import model_graph

INPUT_NAME, OUTPUT_NAME = "tracks", "probabilities"


def build_onnx(model, state, preprocessor, *, sentinels=(-999.0,), ensemble: bool = False,
               posterior: PosteriorMap | None = None, ranges=PLAUSIBLE_RANGES):
    """The `onnx.ModelProto`: raw tracks `f32[N, C]` → class probabilities `f32[N, 4]`.

    **Arguments:**

    - `model`, `state`: a trained model and its `eqx.nn.State` (BatchNorm statistics).
      With `ensemble=True`, a stacked ensemble: its members' probabilities are averaged.
    - `preprocessor`: the run's fitted `Preprocessor` (its layout sets the input columns).
    - `sentinels`: values that mean "missing" besides NaN (the run's `data.sentinels`).
    - `posterior`: the run's `PosteriorMap` (class weights undone, recalibration, abundances),
      applied as softmax(log p / T + c); None: the network's raw probabilities.
    - `ranges`: plausible values per column: one outside (or inf) under a present flag makes its
      group absent, as `pidx predict` does; a track whose kinematics are implausible or whose
      momentum is missing gets NaN probabilities, as `pidx predict` gives it.
    """
    onnx, helper, _ = _onnx()
    g = GraphBuilder()
    feats, mask, unscorable = preprocessing_graph(g, INPUT_NAME, preprocessor, sentinels, ranges)
    if ensemble:
        members = [model.member(i, state) for i in range(model.size)]
        probs = [g.op("Softmax", model_graph(g, m, s, feats, mask), axis=1) for m, s in members]
        probs = g.op("Div", g.op("Sum", *probs), g.const(float(model.size), "k"))
    else:
        probs = g.op("Softmax", model_graph(g, model, state, feats, mask), axis=1)
    if posterior is not None:
        logp = g.op("Log", g.op("Max", probs, g.const(1e-30, "tiny")))
        scaled = g.op("Mul", logp, g.const(1.0 / posterior.temperature, "inverse_temperature"))
        shift = g.const(np.asarray(posterior.logit_shift(), np.float32)[None, :], "posterior_shift")
        probs = g.op("Softmax", g.op("Add", scaled, shift), axis=1)
    if unscorable is not None:
        probs = g.op("Where", unscorable, g.const(np.full((1, len(CLASS_NAMES)), np.nan, np.float32), "unscored"),
                     probs)
    g.nodes.append(helper.make_node("Identity", [probs], [OUTPUT_NAME]))
    n_in = len(input_columns(preprocessor))
    graph = helper.make_graph(
        g.nodes, "pidx", [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", len(CLASS_NAMES)])],
        initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pidx")
    proto.ir_version = 8  # readable by ONNX Runtime >= 1.10
    onnx.checker.check_model(proto)
    return proto


def synthetic_tracks(preprocessor, *, n_per_pattern: int = 64, sentinels=(-999.0,), seed: int = 0) -> pd.DataFrame:
    """Raw float32-exact tracks covering every detector-availability pattern.

    Present values are drawn around the train medians (a few outside the clip range);
    absent groups are NaN or a sentinel, absent Bayes rows NaN, all 0 or all 0.25.
    """
    rng = np.random.default_rng(seed)
    layout = preprocessor.layout
    sentinel = sentinels[0] if sentinels else np.nan
    flagged = [g for g in layout.groups if g.flag is not None]
    patterns = list(itertools.product((0, 1), repeat=len(flagged)))
    n = n_per_pattern * len(patterns)
    cols = {c: np.zeros(n) for c in input_columns(preprocessor)}
    present_all = np.repeat(np.array(patterns, bool), n_per_pattern, axis=0)
    for group in layout.groups:
        k = len(group.columns)
        if group.scale:
            z = rng.standard_normal((n, k)) * np.where(rng.random((n, 1)) < 0.05, 40.0, 1.5)
            v = np.array([preprocessor.median[c] for c in group.columns]) + z * [preprocessor.scale[c] for c in
                                                                               group.columns]
        else:
            v = rng.dirichlet(np.ones(k), n)
        if group.flag is not None:
            present = present_all[:, flagged.index(group)]
            if group.flag == BAYES_FLAG:
                fills = np.array([np.nan, 0.0, 0.25, sentinel])[rng.integers(0, 4, n)]
            else:
                fills = np.where(rng.random(n) < 0.5, np.nan, sentinels[0] if sentinels else np.nan)
                cols[group.flag] = present.astype(float)
            v = np.where(present[:, None], v, fills[:, None])
            if group.absent_if_invalid:  # a NaN or a sentinel under a "present" flag: pidx and the graph make the group absent
                broken = np.flatnonzero(present & (rng.random(n) < 0.05))
                v[broken, rng.integers(0, k, len(broken))] = np.where(rng.random(len(broken)) < 0.5, np.nan, sentinel)
            if group.flag != BAYES_FLAG:  # values no detector produces under a "present" flag: the group is absent
                odd = np.flatnonzero(present & (rng.random(n) < 0.03))
                v[odd, rng.integers(0, k, len(odd))] = np.where(rng.random(len(odd)) < 0.5, np.inf, 1e30)
        for j, c in enumerate(group.columns):
            cols[c] = v[:, j]
    for c in ("p", "pt"):  # a few tracks with a momentum no detector measures: NaN probabilities, in both
        if c in cols:
            cols[c] = np.where(rng.random(n) < 0.01, -1.0, cols[c])
    return pd.DataFrame(cols).astype(np.float32).astype(np.float64)


def pidx_probs(model, state, preprocessor, frame: pd.DataFrame, *, sentinels=(-999.0,),
               posterior: PosteriorMap | None = None) -> np.ndarray:
    """pidx's own probabilities for a raw table: the same validation, preprocessing and jitted
    evaluation pass as `pidx predict` (members' mean for an ensemble) [+ the posterior map]."""
    table = validate_tracks(frame, source="export check", layout=preprocessor.layout, require_label=False,
                            sentinels=tuple(sentinels), ranges=PLAUSIBLE_RANGES, on_invalid="keep")
    predictor = Predictor(model, state, preprocessor, posterior=posterior, eval_batch_size=len(table))
    return np.where(table.unscored[:, None], np.nan, predictor.predict_table(table))  # as pidx predict writes them


def onnx_probs(proto_or_path, frame: pd.DataFrame, columns) -> np.ndarray:
    """ONNX Runtime's probabilities for the columns `columns` of `frame`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking an export needs onnxruntime, a dependency of pidx: reinstall pidx "
                          "(python -m pip install .) or pass --no-check") from None
    src = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else str(proto_or_path)
    session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    x = frame[list(columns)].to_numpy(np.float32)
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def export_onnx(model, state, preprocessor, path: str | Path, *, sentinels=(-999.0,), metadata: dict | None = None,
                posterior: PosteriorMap | None = None, tolerance: float = 1e-5, check: bool = True) -> dict:
    """Write `path` (.onnx) and its sidecar `path.with_suffix(".json")`, atomically.

    **Arguments:**

    - `model`, `state`, `preprocessor`, `sentinels`: as in `build_onnx`.
    - `metadata`: extra JSON-able entries for the sidecar (recipe, momentum range, ...).
    - `posterior`: the `PosteriorMap` to apply inside the graph (the outputs are then posteriors).
    - `tolerance`: largest |Δprob| allowed between ONNX Runtime and pidx in the check.
    - `check`: run the check (needs onnxruntime); `False` only writes.
    """
    from .._version import __version__

    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output must end in .onnx")
    ensemble = is_ensemble(model)
    proto = build_onnx(model, state, preprocessor, sentinels=sentinels, ensemble=ensemble, posterior=posterior)
    columns = input_columns(preprocessor)
    info = {
        "format": "onnx", "opset": OPSET, "pidx_version": __version__,
        "input": {"name": INPUT_NAME, "shape": ["N", len(columns)], "dtype": "float32", "columns": list(columns),
                  "missing": f"NaN or one of the sentinels {list(sentinels)}; Bayes rows also all 0 or all 0.25; "
                             "the has_* flags decide presence"},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(CLASS_NAMES)], "columns": list(PROB_COLUMNS),
                   "classes": list(CLASS_NAMES), "pdg": [211, 321, 2212, 11]},
        "sentinels": list(sentinels), "ensemble_members": model.size if ensemble else 1,
        "plausible_ranges": {c: list(b) for c, b in PLAUSIBLE_RANGES.items() if c in columns},
        "posterior": None if posterior is None else posterior.to_dict(),
        **(metadata or {}),
    }
    if check:
        frame = synthetic_tracks(preprocessor, sentinels=sentinels)
        ours, theirs = pidx_probs(model, state, preprocessor, frame, sentinels=sentinels, posterior=posterior), \
            onnx_probs(proto, frame, columns)
        same_nan = np.isnan(ours) == np.isnan(theirs)
        diff = float(np.max(np.abs(np.nan_to_num(ours) - np.nan_to_num(theirs)))) if same_nan.all() else float("inf")
        if not diff <= tolerance:
            raise ExportError(f"ONNX Runtime and pidx differ by {diff:.3g} > {tolerance:g} on {len(frame)} synthetic "
                              "tracks; nothing was written (report this with the run directory)")
        info["check"] = {"tracks": len(frame), "max_abs_diff": diff, "tolerance": tolerance}
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    atomic_write_json(path.with_suffix(".json"), info)
    return info


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "build_onnx", "synthetic_tracks", "pidx_probs", "onnx_probs", "export_onnx"]

"""The run report: figures and a report.md a physicist reads top to bottom.

`write_report` is a pure function of data: the run's metrics, its per-track test
predictions (labels, momentum, dE/dx, the model's and every baseline's probabilities,
as `test_predictions_frame` builds them), its training history and the importance and
ablation numbers. It never opens a run directory: the run layer (`pidx.runs`) gathers
these, in memory at the end of `pidx fit` or from the files for `pidx report`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.layouts import get_layout
from ..data.schema import CLASS_NAMES
from ..simulation.physics import tpc_expected_signal
from ..training.metrics import confusion_matrix
from ..utils import atomic_write_text
from . import diagnostics, plots
from .histograms import report_histograms, write_root
from .report_text import report_markdown
from .working_points import standard_working_points


@dataclasses.dataclass(frozen=True)
class ReportHeader:
    """What the report says about the run: recipe name, model, data source, range, checkpoint."""

    name: str
    model: str
    source: str
    momentum_range: str
    checkpoint: str


def test_predictions_frame(test_table, momentum, model_probs, baseline_outputs: dict) -> pd.DataFrame:
    """One row per test track: label, momentum (and pT), TPC dE/dx, TOF β and its flag, the model's and each
    baseline's probabilities."""
    layout, frame = get_layout(test_table.layout), test_table.frame
    tof_flag = layout.nsigma["tof"][0]
    cols = {"label": test_table.labels, "p": momentum, "pt": frame["pt"].to_numpy(np.float32),
            "tpc_signal": frame[layout.dedx].to_numpy(), "tof_beta": frame[layout.beta].to_numpy(np.float32),
            "has_tof": frame[tof_flag].to_numpy().astype(bool)}
    for i, c in enumerate(CLASS_NAMES):
        cols[f"model_prob_{c}"] = model_probs[:, i].astype(np.float32)
    for name, out in baseline_outputs.items():
        for i, c in enumerate(CLASS_NAMES):
            cols[f"{name}_prob_{c}"] = out["probs"][:, i].astype(np.float32)
        if out.get("pred") is not None:
            cols[f"{name}_pred"] = out["pred"].astype(np.int8)
    return pd.DataFrame(cols)


def _dedx(p, masses) -> np.ndarray:
    """The simulator's expected TPC dE/dx per species, `[len(p), 4]`."""
    return tpc_expected_signal(np.asarray(p, np.float64)[:, None], np.asarray(masses))


def _beta(p, masses) -> np.ndarray:
    """β = p / E per species, `[len(p), 4]`."""
    p = np.asarray(p, np.float64)[:, None]
    return p / np.sqrt(p ** 2 + np.asarray(masses) ** 2)


def _probs(df: pd.DataFrame, name: str) -> np.ndarray:
    return df[[f"{name}_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)


def _pred(df: pd.DataFrame, name: str) -> np.ndarray:
    col = f"{name}_pred"
    return df[col].to_numpy() if col in df else _probs(df, name).argmax(1)


def write_report(out: str | Path, header: ReportHeader, *, metrics: dict, predictions: pd.DataFrame,
                 history: list[dict], importance: dict, ablation: dict, importance_spread: dict | None = None,
                 train_outputs: tuple | None = None, inputs: tuple | None = None) -> Path:
    """Write the PNGs, `report.md` and `importance.json` into `out`; return the report.md path.

    **Arguments:**

    - `out`: the report directory (created if needed).
    - `header`: what the report says about the run.
    - `metrics`: the run's metrics (metrics.json's content).
    - `predictions`: per-track test predictions (`test_predictions_frame`).
    - `history`: one dict per epoch (history.csv's rows); empty for none.
    - `importance`, `ablation`, `importance_spread`: from `pidx.evaluation.importance.importance_and_ablation`.
    - `train_outputs`: `(posteriors, labels)` of a sample of train tracks, for the overtraining check.
    - `inputs`: `(frame, labels, feature layout)`: the test tracks' columns and species, for the input
      diagnostics.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels, momentum = predictions["label"].to_numpy(), predictions["p"].to_numpy()
    methods = ["model"] + [m for m in ("oracle", "vector_oracle", "gbdt", "xgboost", "lightgbm", "bayes_pid", "nsigma")
                           if f"{m}_prob_pi" in predictions]
    title = f"{header.name} ({header.model}, {header.momentum_range})"
    scores = {m: _probs(predictions, m) for m in methods}
    figs = {
        "roc": plots.roc_curves(labels, scores, out / "roc.png", title),
        "effpur": plots.efficiency_purity(labels, {m: _pred(predictions, m) for m in methods}, momentum,
                                          out / "efficiency_purity_vs_p.png", title=title),
        "purity": plots.purity_vs_efficiency(labels, scores, out / "purity_vs_efficiency.png", title),
        "confusion": plots.confusion(confusion_matrix(labels, _pred(predictions, "model")), out / "confusion.png",
                                     f"{header.model}: normalised confusion"),
    }
    histograms = report_histograms(predictions, scores["model"], metrics.get("working_points", []))
    write_root(out / "histograms.root", histograms)
    figs["dedx"] = plots.signal_map(histograms, "tpc_dedx", _dedx, out / "dedx_vs_p.png",
                                    "TPC dE/dx of the test tracks (expected: the simulator's Bethe–Bloch)")
    if "maps/tof_beta_vs_p" in histograms:
        figs["beta"] = plots.signal_map(histograms, "tof_beta", _beta, out / "tof_beta_vs_p.png",
                                        "TOF β of the test tracks with TOF (expected: p / E)")
    standard = standard_working_points(labels, scores)
    cal = metrics.get("calibration", {})
    if "test" in cal:
        curves = {"posterior": cal["test"]["reliability"]}
        if "test_raw" in cal:
            curves["raw network output"] = cal["test_raw"]["reliability"]
        figs["reliability"] = plots.reliability_diagram(curves, out / "reliability.png",
                                                        f"{title}: reliability on the test split")
    if history:
        figs["curves"] = plots.training_curves(history, out / "training_curves.png")
    if train_outputs is not None:
        test_known = labels >= 0
        ks = diagnostics.overtraining(*train_outputs, scores["model"][test_known], labels[test_known])
        metrics = {**metrics, "overtraining": ks}
        figs["overtraining"] = diagnostics.output_train_test(*train_outputs, scores["model"][test_known],
                                                             labels[test_known], ks, out / "output_train_test.png",
                                                             f"{title}: output on train and test")
    if inputs is not None:
        frame, frame_labels, layout = inputs
        figs["inputs"] = diagnostics.input_distributions(frame, layout, frame_labels, out / "input_distributions.png")
        figs["correlations"], _ = diagnostics.input_correlations(frame, layout, out / "input_correlations.png")
    top = sorted(importance, key=importance.get, reverse=True)[:15]
    figs["importance"] = plots.bar_chart(top, [importance[k] for k in top], out / "feature_importance.png",
                                         "permutation importance (accuracy drop)", "Δ accuracy")
    names = [g for g in ablation if g != "none"]
    figs["ablation"] = plots.bar_chart([f"without {g}" for g in names], [ablation[g] for g in names],
                                       out / "group_ablation.png",
                                       f"accuracy with a detector group removed (all groups: {ablation['none']:.4f})",
                                       "accuracy")
    atomic_write_text(out / "report.md", report_markdown(header, metrics, figs, importance, ablation, top, standard,
                                                         importance_spread or {}, labels, momentum,
                                                         _pred(predictions, "model")))
    atomic_write_text(out / "importance.json", json.dumps({"importance": importance, "ablation": ablation,
                                                           "importance_spread": importance_spread,
                                                           "overtraining": metrics.get("overtraining")}, indent=1))
    return out / "report.md"


__all__ = ["ReportHeader", "test_predictions_frame", "write_report"]

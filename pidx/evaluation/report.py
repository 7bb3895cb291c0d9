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
from ..data.schema import CLASS_LABELS, CLASS_NAMES
from ..training.metrics import confusion_matrix
from ..utils import atomic_write_text
from . import plots
from .tables import fmt_number as _f, markdown_table


@dataclasses.dataclass(frozen=True)
class ReportHeader:
    """What the report says about the run: recipe name, model, data source, range, checkpoint."""

    name: str
    model: str
    source: str
    momentum_range: str
    checkpoint: str


def test_predictions_frame(test_table, momentum, model_probs, baseline_outputs: dict) -> pd.DataFrame:
    """One row per test track: label, momentum, TPC dE/dx, the model's and each baseline's probabilities."""
    dedx = test_table.frame[get_layout(test_table.layout).dedx].to_numpy()
    cols = {"label": test_table.labels, "p": momentum, "tpc_signal": dedx}
    for i, c in enumerate(CLASS_NAMES):
        cols[f"model_prob_{c}"] = model_probs[:, i].astype(np.float32)
    for name, out in baseline_outputs.items():
        for i, c in enumerate(CLASS_NAMES):
            cols[f"{name}_prob_{c}"] = out["probs"][:, i].astype(np.float32)
        if out.get("pred") is not None:
            cols[f"{name}_pred"] = out["pred"].astype(np.int8)
    return pd.DataFrame(cols)


def _probs(df: pd.DataFrame, name: str) -> np.ndarray:
    return df[[f"{name}_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)


def _pred(df: pd.DataFrame, name: str) -> np.ndarray:
    col = f"{name}_pred"
    return df[col].to_numpy() if col in df else _probs(df, name).argmax(1)


def write_report(out: str | Path, header: ReportHeader, *, metrics: dict, predictions: pd.DataFrame,
                 history: list[dict], importance: dict, ablation: dict) -> Path:
    """Write the PNGs, `report.md` and `importance.json` into `out`; return the report.md path.

    **Arguments:**

    - `out`: the report directory (created if needed).
    - `header`: what the report says about the run.
    - `metrics`: the run's metrics (metrics.json's content).
    - `predictions`: per-track test predictions (`test_predictions_frame`).
    - `history`: one dict per epoch (history.csv's rows); empty for none.
    - `importance`, `ablation`: from `pidx.evaluation.importance.importance_and_ablation`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels, momentum = predictions["label"].to_numpy(), predictions["p"].to_numpy()
    methods = ["model"] + [m for m in ("oracle", "gbdt", "xgboost", "lightgbm", "bayes_pid", "nsigma") if f"{m}_prob_pi" in predictions]
    title = f"{header.name} ({header.model}, {header.momentum_range})"
    figs = {
        "roc": plots.roc_curves(labels, {m: _probs(predictions, m) for m in methods}, out / "roc.png", title),
        "effpur": plots.efficiency_purity(labels, {m: _pred(predictions, m) for m in methods}, momentum,
                                          out / "efficiency_purity_vs_p.png", title=title),
        "confusion": plots.confusion(confusion_matrix(labels, _pred(predictions, "model")), out / "confusion.png",
                                     f"{header.model}: normalised confusion"),
        "dedx": plots.dedx_map(momentum, predictions["tpc_signal"].to_numpy(), labels, _pred(predictions, "model"),
                               out / "dedx_vs_p.png"),
    }
    cal = metrics.get("calibration", {})
    if "test" in cal:
        curves = {"model": cal["test"]["reliability"]}
        if "test_calibrated" in cal:
            curves[f"temperature-scaled (T={cal['temperature']:.3f})"] = cal["test_calibrated"]["reliability"]
        figs["reliability"] = plots.reliability_diagram(curves, out / "reliability.png",
                                                        f"{title}: reliability on the test split")
    if history:
        figs["curves"] = plots.training_curves(history, out / "training_curves.png")
    top = sorted(importance, key=importance.get, reverse=True)[:15]
    figs["importance"] = plots.bar_chart(top, [importance[k] for k in top], out / "feature_importance.png",
                                         "permutation importance (accuracy drop)", "Δ accuracy")
    names = [g for g in ablation if g != "none"]
    figs["ablation"] = plots.bar_chart([f"without {g}" for g in names], [ablation[g] for g in names],
                                       out / "group_ablation.png",
                                       f"accuracy with a detector group removed (all groups: {ablation['none']:.4f})",
                                       "accuracy")
    atomic_write_text(out / "report.md", _markdown(header, metrics, figs, importance, ablation, top))
    atomic_write_text(out / "importance.json", json.dumps({"importance": importance, "ablation": ablation}, indent=1))
    return out / "report.md"


def _markdown(header: ReportHeader, metrics, figs, importance, ablation, top) -> str:
    t, tr, data = metrics["test"], metrics.get("training", {}), metrics.get("data", {})
    base = metrics.get("baselines", {})
    lines = [f"# PID report: {header.name}", "",
             f"Model **{header.model}** trained on `{header.source}` in the momentum range "
             f"**{header.momentum_range}** ({data.get('momentum_variable', 'p')} in "
             f"{data.get('momentum_range')} GeV/c). Checkpoint `{header.checkpoint}`; "
             f"{tr.get('epochs_run')} epochs ({tr.get('stop_reason')}), best epoch {tr.get('best_epoch')}, "
             f"{_f(tr.get('wall_s'), 0)} s on {tr.get('device', '?')}.", "",
             f"Test split: {t['n_tracks']:,} tracks, never used for early stopping or checkpoint selection. "
             f"Always predicting the majority class would give accuracy {_f(metrics.get('majority_baseline'))}.", "",
             "## Model and classic methods on the same test tracks", ""]
    rows = [["**" + header.model + "**", _f(t["accuracy"]), _f(t["balanced_accuracy"]), _f(t["macro_auc"]),
             _f(t.get("gap_to_oracle_pp"), 2), _f(t.get("balanced_gap_to_oracle_pp"), 2)]]
    for name, m in base.items():
        rows.append([name, _f(m["accuracy"]), _f(m["balanced_accuracy"]), _f(m["macro_auc"]),
                     _f(m.get("gap_to_oracle_pp"), 2), _f(m.get("balanced_gap_to_oracle_pp"), 2)])
    lines.append(markdown_table(["method", "accuracy", "balanced acc.", "macro AUC", "gap to oracle (pp)",
                                "balanced gap (pp)"], rows))
    if "oracle" in base:
        w = base["oracle"]["weighted_decision"]
        lines += ["The **oracle** is the simulator's exact posterior: no classifier can beat its accuracy on this "
                  "data. Models trained with class weights aim at balanced accuracy instead; their fair ceiling is the "
                  f"oracle's class-weighted decision (accuracy {_f(w['accuracy'])}, balanced accuracy "
                  f"{_f(w['balanced_accuracy'])}), against which the *balanced gap* is measured.", ""]
    if "bayes_pid" in base and base["bayes_pid"].get("with_bayes"):
        b = base["bayes_pid"]
        lines += [f"Bayesian PID is available for {100 * b['bayes_available_fraction']:.1f} % of test tracks "
                  f"(accuracy {_f(b['with_bayes']['accuracy'])} there); the rest use the n-sigma fallback.", ""]
    lines += ["## Per species", ""]
    rows = [[CLASS_LABELS[i], _f(m["auc"]), _f(m["efficiency"]), _f(m["purity"]), _f(m["f1"]), m.get("n_true", "")]
            for i, (c, m) in enumerate(t["per_class"].items())]
    lines += [markdown_table(["species", "AUC", "efficiency", "purity", "F1", "tracks"], rows),
              "![confusion](confusion.png)", "", "## ROC curves (one species vs the rest)", "",
              "![roc](roc.png)", "", "## Efficiency and purity vs momentum", "",
              "The standard ALICE PID figure: efficiency (fraction of true tracks of a species identified as it) "
              "and purity (fraction of tracks identified as a species that really are it) in momentum bins.", "",
              "![effpur](efficiency_purity_vs_p.png)", "", "## TPC dE/dx vs momentum", "",
              "![dedx](dedx_vs_p.png)", ""]
    if "reliability" in figs:
        lines += _calibration_lines(metrics["calibration"])
    if "curves" in figs:
        lines += ["## Training curves", "", "![curves](training_curves.png)", ""]
    lines += ["## What the model uses", "",
              "Permutation importance: accuracy drop when one (preprocessed) feature is shuffled across tracks.", "",
              "![importance](feature_importance.png)", "",
              markdown_table(["feature", "Δ accuracy"], [[k, _f(importance[k])] for k in top[:10]]),
              "Detector-group ablation: accuracy when a group is removed from every track (masked and filled as "
              "if the detector had not measured it).", "", "![ablation](group_ablation.png)", "",
              markdown_table(["removed group", "accuracy"], [[k, _f(v)] for k, v in ablation.items()])]
    return "\n".join(lines) + "\n"


def _calibration_lines(cal: dict) -> list[str]:
    rows = [["model", _f(cal["test"]["ece"]), _f(cal["test"]["nll"])]
            + [_f(cal["test"]["classwise_ece"][c]) for c in cal["test"]["classwise_ece"]]]
    if "test_calibrated" in cal:
        tc = cal["test_calibrated"]
        rows.append([f"T = {cal['temperature']:.3f}", _f(tc["ece"]), _f(tc["nll"])]
                    + [_f(tc["classwise_ece"][c]) for c in tc["classwise_ece"]])
    lines = ["## Calibration", "",
             f"Expected calibration error (top label, {cal['test']['bins']} equal-width bins) and per-species ECE "
             "(one vs rest) on the test split. Balanced class weights shift probabilities towards rare species by "
             "design, so a class-weighted model is expected to be miscalibrated for the true mixture.", "",
             markdown_table(["probabilities", "ECE", "NLL"] + [f"ECE {c}" for c in cal["test"]["classwise_ece"]], rows)]
    if "temperature" in cal:
        lines += [f"Temperature fitted on the validation split ({cal['val_tracks']:,} tracks): NLL "
                  f"{_f(cal['val_nll_before'])} → {_f(cal['val_nll_after'])}.", ""]
    return lines + ["![reliability](reliability.png)", ""]


__all__ = ["ReportHeader", "test_predictions_frame", "write_report"]

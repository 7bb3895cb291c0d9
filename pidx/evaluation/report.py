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
from .tables import data_notes, fmt_number as _f, markdown_table
from .working_points import STANDARD_PURITIES, standard_working_points


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
        "dedx": plots.dedx_map(momentum, predictions["tpc_signal"].to_numpy(), labels, _pred(predictions, "model"),
                               out / "dedx_vs_p.png"),
    }
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
    top = sorted(importance, key=importance.get, reverse=True)[:15]
    figs["importance"] = plots.bar_chart(top, [importance[k] for k in top], out / "feature_importance.png",
                                         "permutation importance (accuracy drop)", "Δ accuracy")
    names = [g for g in ablation if g != "none"]
    figs["ablation"] = plots.bar_chart([f"without {g}" for g in names], [ablation[g] for g in names],
                                       out / "group_ablation.png",
                                       f"accuracy with a detector group removed (all groups: {ablation['none']:.4f})",
                                       "accuracy")
    atomic_write_text(out / "report.md", _markdown(header, metrics, figs, importance, ablation, top, standard))
    atomic_write_text(out / "importance.json", json.dumps({"importance": importance, "ablation": ablation}, indent=1))
    return out / "report.md"


def _contamination_lines(test: dict) -> list[str]:
    cont = test.get("contamination")
    if not cont:
        return []
    chosen = ", ".join(f"{n:,} as {CLASS_LABELS[i]}" for i, n in enumerate(cont["selected_as"].values()) if n)
    return [f"The test split also holds {cont['tracks']:,} tracks of other species (muons, nuclei, fake tracks), kept "
            f"as contamination: the model selected {chosen or 'none of them'}. They count against every purity "
            "below and are left out of accuracy, AUC and NLL.", ""]


def _markdown(header: ReportHeader, metrics, figs, importance, ablation, top, standard) -> str:
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
             *[f"- {note}" for note in data_notes(data)], *([""] if data_notes(data) else []),
             *_contamination_lines(t),
             "## Model and classic methods on the same test tracks", ""]
    def row(name, m):
        w = m.get("weighted_decision", {})
        return [name, _f(m["accuracy"]), _f(w.get("balanced_accuracy", m["balanced_accuracy"])), _f(m["macro_auc"]),
                _f(m.get("nll")), _f(m.get("gap_to_oracle_pp"), 2), _f(m.get("balanced_gap_to_oracle_pp"), 2),
                _f(m.get("gap_to_vector_oracle_pp"), 2)]

    rows = [row("**" + header.model + "**", t)] + [row(name, m) for name, m in base.items()]
    lines.append(markdown_table(["method", "accuracy", "balanced acc. (weighted decision)", "macro AUC", "NLL",
                                 "gap to oracle (pp)",
                                "balanced gap (pp)", "gap to vector oracle (pp)"], rows))
    lines += ["Accuracy is that of the argmax of the posteriors; the balanced accuracy here is that of the "
              "class-weighted decision argmax P(c|x)/π_c (π: the training sample's abundances), the decision that "
              "maximises it (the console's `balanced accuracy (argmax)` is that of the argmax).", ""]
    if "oracle" in base:
        lines += ["The **oracle** is the simulator's exact posterior: no classifier can beat its accuracy, macro AUC "
                  "or NLL on this data; the gaps are measured against it.", ""]
    if "vector_oracle" in base:
        lines += ["The **vector oracle** is the exact posterior given only what the 46-value vector of "
                  "`pid-onnx-inference` carries (not the per-layer ITS cluster sizes, nor centrality): the ceiling "
                  "of a model that reads that vector and nothing else.", ""]
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
              "![effpur](efficiency_purity_vs_p.png)", ""]
    lines += _working_point_lines(metrics.get("working_points", []), standard)
    lines += ["## TPC dE/dx vs momentum", "",
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


def _working_point_lines(selections: list[dict], standard: dict) -> list[str]:
    lines = ["## Working points", "",
             "Selecting a species with P(species | track) ≥ t: purity against efficiency over every threshold t, on "
             "the test split.", "", "![purity](purity_vs_efficiency.png)", "",
             "The best efficiency at standard purities (– where no threshold reaches it), read off the test-split "
             "curves of every method alike:", ""]
    header = ["method"] + [f"{CLASS_LABELS[c]} @ {p:g}" for c in range(len(CLASS_NAMES)) for p in STANDARD_PURITIES]
    rows = [[m] + [_f(standard[m][s][f"{p:g}"]) for s in CLASS_NAMES for p in STANDARD_PURITIES] for m in standard]
    lines.append(markdown_table(header, rows))
    if selections:
        lines += ["The recipe's selections: threshold chosen on the **validation** split, efficiency and purity "
                  "measured on the **test** split.", ""]
        rows = [[s["working_point"], _f(s["threshold"]), _f(s["validation"]["efficiency"]),
                 _f(s["validation"]["purity"]), _f(s["test"]["efficiency"]), _f(s["test"]["purity"])]
                for s in selections]
        lines.append(markdown_table(["selection", "threshold", "val. efficiency", "val. purity", "test efficiency",
                                     "test purity"], rows))
    return lines


def _calibration_lines(cal: dict) -> list[str]:
    def row(name, c):
        return [name, _f(c["ece"]), _f(c["nll"])] + [_f(c["classwise_ece"][s]) for s in c["classwise_ece"]]

    rows = [row("posterior", cal["test"])] + ([row("raw network output", cal["test_raw"])] if "test_raw" in cal else [])
    lines = ["## Calibration", "",
             f"Expected calibration error (top label, {cal['test']['bins']} equal-width bins) and per-species ECE "
             "(one vs rest) on the test split. The raw network output carries the class weights and the loss's "
             "distortions; the posteriors have them undone (`evaluation.posterior`, fitted on the validation split).",
             "", markdown_table(["probabilities", "ECE", "NLL"] + [f"ECE {c}" for c in cal["test"]["classwise_ece"]],
                                rows)]
    post = cal.get("posterior")
    if post:
        lines += [f"Posterior map ({cal['method']}, validation split, {cal['val_tracks']:,} tracks): class weights "
                  f"{', '.join(_f(w, 3) for w in post['class_weights'])} divided out, temperature "
                  f"{_f(post['temperature'])}, biases {', '.join(_f(b, 3) for b in post['bias'])}; validation NLL "
                  f"{_f(cal['val_nll_raw'])} (raw) → {_f(cal['val_nll_weights_undone'])} (weights undone) → "
                  f"{_f(cal['val_nll'])}.", ""]
    return lines + ["![reliability](reliability.png)", ""]


__all__ = ["ReportHeader", "test_predictions_frame", "write_report"]

"""`pidx report RUN_DIR`: figures and a report.md a physicist reads top to bottom.

`pidx fit` writes `test_predictions.parquet` (labels, momentum, dE/dx, the model's and
every baseline's per-track probabilities on the test split); the report is built from
it, from metrics.json and history.csv, and from the best checkpoint (for permutation
feature importance and the detector-group ablation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.datamodule import TrackArrays
from ..data.schema import CLASS_LABELS, CLASS_NAMES
from ..utils import atomic_write_text
from . import plots
from .metrics import confusion_matrix

PREDICTIONS_FILE = "test_predictions.parquet"


def write_test_predictions(run_dir: Path, test_table, momentum, model_probs, baseline_outputs: dict) -> Path:
    from ..data.io import write_table

    from ..data.layouts import get_layout

    dedx = test_table.frame[get_layout(test_table.layout).dedx].to_numpy()
    cols = {"label": test_table.labels, "p": momentum, "tpc_signal": dedx}
    for i, c in enumerate(CLASS_NAMES):
        cols[f"model_prob_{c}"] = model_probs[:, i].astype(np.float32)
    for name, out in baseline_outputs.items():
        for i, c in enumerate(CLASS_NAMES):
            cols[f"{name}_prob_{c}"] = out["probs"][:, i].astype(np.float32)
        if out.get("pred") is not None:
            cols[f"{name}_pred"] = out["pred"].astype(np.int8)
    return write_table(pd.DataFrame(cols), run_dir / PREDICTIONS_FILE)


def _probs(df: pd.DataFrame, name: str) -> np.ndarray:
    return df[[f"{name}_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)


def _pred(df: pd.DataFrame, name: str) -> np.ndarray:
    col = f"{name}_pred"
    return df[col].to_numpy() if col in df else _probs(df, name).argmax(1)


def masked_group(arrays: TrackArrays, layout, group_index: int) -> TrackArrays:
    """The arrays as if detector group `group_index` had not measured any track."""
    import jax.numpy as jnp

    group = layout.groups[group_index]
    a, b = layout.group_slices[group_index]
    x = arrays.features.at[:, a:b].set(group.missing_fill)
    mask = arrays.group_mask
    if group.flag is not None:
        flag_col = layout.feature_names.index(f"available_{group.name}")
        x = x.at[:, flag_col].set(0.0)
        mask = mask.at[:, group_index].set(False)
    return TrackArrays(x, jnp.asarray(mask), arrays.label, arrays.p)


def importance_and_ablation(predict, arrays: TrackArrays, layout, *, max_tracks: int = 20_000, seed: int = 0):
    """Permutation importance per feature and accuracy with each detector group removed."""
    import jax.numpy as jnp

    n = min(arrays.num_tracks, max_tracks)
    rows = np.sort(np.random.default_rng(seed).choice(arrays.num_tracks, n, replace=False))
    sub = TrackArrays(*(jnp.asarray(np.asarray(a)[rows]) for a in arrays))
    labels = np.asarray(sub.label)
    base = float(np.mean(predict(sub).argmax(1) == labels))
    rng = np.random.default_rng(seed + 1)
    importance = {}
    x = np.asarray(sub.features)
    for j, name in enumerate(layout.feature_names):
        shuffled = x.copy()
        shuffled[:, j] = x[rng.permutation(n), j]
        acc = float(np.mean(predict(sub._replace(features=jnp.asarray(shuffled))).argmax(1) == labels))
        importance[name] = base - acc
    ablation = {"none": base}
    for g, group in enumerate(layout.groups):
        ablation[group.name] = float(np.mean(predict(masked_group(sub, layout, g)).argmax(1) == labels))
    return base, importance, ablation


def _table(rows: list[list], header: list[str]) -> str:
    out = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    return out + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in rows)


def _f(v, d=4):
    return "–" if v is None else f"{v:.{d}f}"


def generate_report(run_dir: str | Path, *, max_tracks: int = 20_000) -> Path:
    """Write `<run_dir>/report/` (PNGs + report.md) and return the report.md path."""
    from ..run import load_run_model, make_datamodule, make_trainer, read_run

    run_dir = Path(run_dir)
    cfg, metrics = read_run(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    preds = pd.read_parquet(run_dir / PREDICTIONS_FILE)
    labels, momentum = preds["label"].to_numpy(), preds["p"].to_numpy()
    methods = ["model"] + [m for m in ("oracle", "gbdt", "bayes_pid", "nsigma") if f"{m}_prob_pi" in preds]
    title = f"{cfg['name']} ({cfg['model']['name']}, {cfg['data']['momentum_range']})"
    figs = {
        "roc": plots.roc_curves(labels, {m: _probs(preds, m) for m in methods}, out / "roc.png", title),
        "effpur": plots.efficiency_purity(labels, {m: _pred(preds, m) for m in methods}, momentum,
                                          out / "efficiency_purity_vs_p.png", title=title),
        "confusion": plots.confusion(confusion_matrix(labels, _pred(preds, "model")), out / "confusion.png",
                                     f"{cfg['model']['name']}: normalised confusion"),
        "dedx": plots.dedx_map(momentum, preds["tpc_signal"].to_numpy(), labels, _pred(preds, "model"),
                               out / "dedx_vs_p.png"),
    }
    cal = metrics.get("calibration", {})
    if "test" in cal:
        curves = {"model": cal["test"]["reliability"]}
        if "test_calibrated" in cal:
            curves[f"temperature-scaled (T={cal['temperature']:.3f})"] = cal["test_calibrated"]["reliability"]
        figs["reliability"] = plots.reliability_diagram(curves, out / "reliability.png",
                                                        f"{title}: reliability on the test split")
    history = pd.read_csv(run_dir / "history.csv").to_dict("records") if (run_dir / "history.csv").is_file() else []
    if history:
        figs["curves"] = plots.training_curves(history, out / "training_curves.png")

    _, model, state, pre, ckpt = load_run_model(run_dir)
    dm = make_datamodule(cfg).setup()
    trainer = make_trainer(cfg, run_dir, quiet=True)
    trainer.model, trainer.model_state = model, state
    base, importance, ablation = importance_and_ablation(trainer.predict, dm.test, pre.layout, max_tracks=max_tracks)
    top = sorted(importance, key=importance.get, reverse=True)[:15]
    figs["importance"] = plots.bar_chart(top, [importance[k] for k in top], out / "feature_importance.png",
                                         "permutation importance (accuracy drop)", "Δ accuracy")
    names = [g for g in ablation if g != "none"]
    figs["ablation"] = plots.bar_chart([f"without {g}" for g in names], [ablation[g] for g in names],
                                       out / "group_ablation.png",
                                       f"accuracy with a detector group removed (all groups: {base:.4f})", "accuracy")
    text = _markdown(cfg, metrics, figs, importance, ablation, top, ckpt, run_dir)
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "importance.json", json.dumps({"importance": importance, "ablation": ablation}, indent=1))
    return out / "report.md"


def _markdown(cfg, metrics, figs, importance, ablation, top, ckpt, run_dir) -> str:
    t, tr, data = metrics["test"], metrics.get("training", {}), metrics.get("data", {})
    base = metrics.get("baselines", {})
    lines = [f"# PID report: {cfg['name']}", "",
             f"Model **{cfg['model']['name']}** trained on `{cfg['data']['source']}` in the momentum range "
             f"**{cfg['data']['momentum_range']}** ({data.get('momentum_variable', 'p')} in "
             f"{data.get('momentum_range')} GeV/c). Checkpoint `{Path(ckpt).relative_to(run_dir) if Path(ckpt).is_relative_to(run_dir) else ckpt}`; "
             f"{tr.get('epochs_run')} epochs ({tr.get('stop_reason')}), best epoch {tr.get('best_epoch')}, "
             f"{_f(tr.get('wall_s'), 0)} s on {tr.get('device', '?')}.", "",
             f"Test split: {t['n_tracks']:,} tracks, never used for early stopping or checkpoint selection. "
             f"Always predicting the majority class would give accuracy {_f(metrics.get('majority_baseline'))}.", "",
             "## Model and classic methods on the same test tracks", ""]
    rows = [["**" + cfg["model"]["name"] + "**", _f(t["accuracy"]), _f(t["balanced_accuracy"]), _f(t["macro_auc"]),
             _f(t.get("gap_to_oracle_pp"), 2), _f(t.get("balanced_gap_to_oracle_pp"), 2)]]
    for name, m in base.items():
        rows.append([name, _f(m["accuracy"]), _f(m["balanced_accuracy"]), _f(m["macro_auc"]),
                     _f(m.get("gap_to_oracle_pp"), 2), _f(m.get("balanced_gap_to_oracle_pp"), 2)])
    lines.append(_table(rows, ["method", "accuracy", "balanced acc.", "macro AUC", "gap to oracle (pp)",
                               "balanced gap (pp)"]))
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
    lines += [_table(rows, ["species", "AUC", "efficiency", "purity", "F1", "tracks"]),
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
              _table([[k, _f(importance[k])] for k in top[:10]], ["feature", "Δ accuracy"]),
              "Detector-group ablation: accuracy when a group is removed from every track (masked and filled as "
              "if the detector had not measured it).", "", "![ablation](group_ablation.png)", "",
              _table([[k, _f(v)] for k, v in ablation.items()], ["removed group", "accuracy"])]
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
             _table(rows, ["probabilities", "ECE", "NLL"] + [f"ECE {c}" for c in cal["test"]["classwise_ece"]])]
    if "temperature" in cal:
        lines += [f"Temperature fitted on the validation split ({cal['val_tracks']:,} tracks): NLL "
                  f"{_f(cal['val_nll_before'])} → {_f(cal['val_nll_after'])}.", ""]
    return lines + ["![reliability](reliability.png)", ""]


__all__ = ["PREDICTIONS_FILE", "write_test_predictions", "masked_group", "importance_and_ablation",
           "generate_report"]

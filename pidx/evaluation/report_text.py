"""report.md's text: the numbers of a run and the figures beside them (`report.write_report` writes it)."""

from __future__ import annotations

from ..data.schema import CLASS_LABELS, CLASS_NAMES
from ..training.metrics import efficiency_purity_vs_momentum
from . import diagnostics
from .shift import shift_markdown
from .histograms import momentum_edges
from .tables import data_notes, fmt_number as _f, markdown_table
from .working_points import STANDARD_PURITIES


def _contamination_lines(test: dict) -> list[str]:
    cont = test.get("contamination")
    if not cont:
        return []
    chosen = ", ".join(f"{n:,} as {CLASS_LABELS[i]}" for i, n in enumerate(cont["selected_as"].values()) if n)
    return [f"The test split also holds {cont['tracks']:,} tracks of other species (muons, nuclei, fake tracks), kept "
            f"as contamination: the model selected {chosen or 'none of them'}. They count against every purity "
            "below and are left out of accuracy, AUC and NLL.", ""]


def _rate(values: dict, key: str, index: int | None = None, digits: int = 4) -> str:
    """`values[key]` (or its `index`-th entry) with its `<key>_interval` beside it: `0.9512 [0.9490, 0.9533]`."""
    value, band = values.get(key), values.get(f"{key}_interval")
    if index is not None:
        value, band = value[index], band[index]
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return text if not band or band[0] is None else f"{text} [{band[0]:.{digits}f}, {band[1]:.{digits}f}]"


def _per_bin_lines(labels, pred, momentum) -> list[str]:
    """The model's efficiency and purity per momentum bin with their Clopper–Pearson intervals and counts."""
    res = efficiency_purity_vs_momentum(labels, pred, momentum, momentum_edges(momentum))
    edges = res["bins"]

    lines = ["The model's values with their 68.27 % Clopper–Pearson intervals (the error bars above) and the track "
             "counts behind them; `histograms.root` holds the same as passed/total histograms.", ""]
    for c, sp in enumerate(CLASS_NAMES):
        r = res[sp]
        rows = [[f"{edges[b]:.2f}–{edges[b + 1]:.2f}", _rate(r, "efficiency", b, 3),
                 f"{r['n_passed'][b]:,} / {r['n_true'][b]:,}", _rate(r, "purity", b, 3),
                 f"{r['n_passed'][b]:,} / {r['n_selected'][b]:,}"] for b in range(len(edges) - 1)]
        lines += [f"<details><summary>{CLASS_LABELS[c]}</summary>", "",
                  markdown_table(["p (GeV/c)", "efficiency", "passed / true", "purity", "passed / selected"], rows),
                  "</details>", ""]
    return lines


def report_markdown(header, metrics: dict, figs: dict, importance: dict, ablation: dict, top: list[str],
                    standard: dict, spread: dict, labels, momentum, model_pred) -> str:
    """report.md's text: the run's numbers, the figures in `figs` and the tables beside them.

    **Arguments:**

    - `header`: the `ReportHeader`.
    - `metrics`: metrics.json's content (with `overtraining` where it was checked).
    - `figs`: figure name → path of the figures written.
    - `importance`, `ablation`, `spread`, `top`: permutation importance (mean, std), group ablation and
      the features to list.
    - `standard`: `standard_working_points`' output.
    - `labels`, `momentum`, `model_pred`: the test tracks' truth, p and the model's decision.
    """
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
    rows = [[CLASS_LABELS[i], _f(m["auc"]), _rate(m, "efficiency"), _rate(m, "purity"), _f(m["f1"]), m.get("n_true", "")]
            for i, (c, m) in enumerate(t["per_class"].items())]
    lines += [markdown_table(["species", "AUC", "efficiency [68 % interval]", "purity [68 % interval]", "F1",
                              "tracks"], rows),
              "![confusion](confusion.png)", "", "## ROC curves (one species vs the rest)", "",
              "![roc](roc.png)", "", "## Efficiency and purity vs momentum", "",
              "The standard ALICE PID figure: efficiency (fraction of true tracks of a species identified as it) "
              "and purity (fraction of tracks identified as a species that really are it) in momentum bins.", "",
              "![effpur](efficiency_purity_vs_p.png)", "", *_per_bin_lines(labels, model_pred, momentum)]
    lines += _working_point_lines(metrics.get("working_points", []), standard)
    lines += ["## Detector signals vs momentum", "",
              "Densities of the test tracks (log colour scale), all together and per true species, with each "
              "species' expected signal; the same maps are in `histograms.root` (`maps/`).", "",
              "![dedx](dedx_vs_p.png)", "", *(["![beta](tof_beta_vs_p.png)", ""] if "beta" in figs else [])]
    if "reliability" in figs:
        lines += _calibration_lines(metrics["calibration"])
    if "curves" in figs:
        lines += ["## Training curves", "", "![curves](training_curves.png)", ""]
    lines += _diagnostic_lines(metrics, figs)
    lines += ["## What the model uses", "",
              "Permutation importance: accuracy drop when one (preprocessed) feature is shuffled across tracks, the "
              "mean and standard deviation over repeated shuffles. A note marks an input whose importance on "
              "simulated tracks can come from how the simulation ties it to species: a data–MC risk.", "",
              "![importance](feature_importance.png)", "",
              markdown_table(["feature", "Δ accuracy", "spread (std)", "data–MC risk"],
                             [[k, _f(importance[k]), _f(spread.get(k)), diagnostics.DATA_MC_RISKS.get(k, "")]
                              for k in top[:10]]),
              "Detector-group ablation: accuracy when a group is removed from every track (masked and filled as "
              "if the detector had not measured it).", "", "![ablation](group_ablation.png)", "",
              markdown_table(["removed group", "accuracy"], [[k, _f(v)] for k, v in ablation.items()])]
    if "shift" in metrics:  # a target sample was given: how it differs from the MC
        lines += ["", "## MC and data", "", "The test split (MC) against the target sample (`data.target`), before "
                  "any correction: a classifier per detector group tries to tell them apart by that group's inputs "
                  "alone.", "", shift_markdown(metrics["shift"])]
    return "\n".join(lines) + "\n"


def _diagnostic_lines(metrics: dict, figs: dict) -> list[str]:
    lines = []
    if "overtraining" in figs:
        ks = metrics["overtraining"]
        rows = [[CLASS_LABELS[c], _f(ks[sp]["ks_statistic"]), _f(ks[sp]["p_value"], 3), f"{ks[sp]['train_tracks']:,}",
                 f"{ks[sp]['test_tracks']:,}"] for c, sp in enumerate(CLASS_NAMES)]
        lines += ["## Overtraining check", "",
                  "The model's P(species) on a sample of train tracks (filled) and on the test split (points), per "
                  "true species, and the Kolmogorov–Smirnov p-value of P(species) on that species' tracks, train "
                  "against test. A model that learned its train tracks by heart scores them higher than unseen "
                  "ones, and the p-value falls towards 0.", "", "![overtraining](output_train_test.png)", "",
                  markdown_table(["species", "KS statistic", "p-value", "train tracks", "test tracks"], rows)]
    if "inputs" in figs:
        lines += ["## Inputs", "",
                  "Every model input per true species, over the test tracks where its detector group is present, "
                  "and the inputs' correlation matrix.", "", "![inputs](input_distributions.png)", "",
                  "![correlations](input_correlations.png)", ""]
    return lines


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
                  "measured on the **test** split (with 68.27 % Clopper–Pearson intervals).", ""]
        rows = [[s["working_point"], _f(s["threshold"]), _f(s["validation"]["efficiency"]),
                 _f(s["validation"]["purity"]), _rate(s["test"], "efficiency"), _rate(s["test"], "purity")]
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


__all__ = ["report_markdown"]

"""The report's binned quantities as `hist` histograms, and `histograms.root` for ROOT macros.

Efficiency and purity per momentum bin are ratios of two histograms of track counts, which is how
an analysis corrects for them (ROOT's `TEfficiency(passed, total)`; O2Physics'
`pidMlEffAndPurProducer` writes the same pairs). `histograms.root` holds, for the model's argmax
decision and for each of the recipe's working points:

```
<selection>/efficiency_vs_p/<species>_passed    true <species> tracks selected as <species>, vs p
<selection>/efficiency_vs_p/<species>_total     true <species> tracks, vs p
<selection>/purity_vs_p/<species>_passed        (= efficiency's passed)
<selection>/purity_vs_p/<species>_total         tracks selected as <species> (other species included), vs p
<selection>/..._vs_pt/...                       the same against pT
model/confusion                                 true species (x) against the argmax (y), track counts
maps/tpc_dedx_vs_p[_<species>]                  TPC dE/dx against p, all tracks and per true species
maps/tof_beta_vs_p[_<species>]                  TOF β against p, tracks with TOF
```

`<selection>` is `model` (argmax) or `wp_<name>` (a working point: P(species) ≥ its threshold);
species are `pi`, `ka`, `pr`, `el`. Under- and overflow bins hold the tracks outside the edges, so
a histogram's sum with its flow bins is every track it counts.
"""

from __future__ import annotations

from pathlib import Path

import hist
import numpy as np

from ..data.schema import CLASS_NAMES
from ..training.metrics import DEFAULT_MOMENTUM_BINS
from ..utils import atomic_path
from .working_points import WorkingPoint


def momentum_edges(momentum, bins=DEFAULT_MOMENTUM_BINS) -> np.ndarray:
    """Bin edges over the tracks' momentum range: the standard bins inside it, or 8 equal bins in a narrow range."""
    momentum = np.asarray(momentum, np.float64)
    lo, hi = float(np.nanmin(momentum)), float(np.nanmax(momentum))
    edges = np.asarray(bins, dtype=np.float64)
    edges = np.unique(np.concatenate([[lo], edges[(edges > lo) & (edges < hi)], [hi]]))
    if len(edges) < 7:
        edges = np.linspace(lo, hi, 9)
    edges[-1] = np.nextafter(edges[-1], np.inf)  # the highest track inside the last bin, not overflow
    return edges


def _counts(values, edges, name: str, label: str) -> hist.Hist:
    h = hist.Hist(hist.axis.Variable(edges, name=name, label=label), storage=hist.storage.Double())
    return h.fill(np.asarray(values, np.float64))


def selection_histograms(labels, selected: dict[int, np.ndarray], variable, edges, name: str = "p",
                         label: str = "p (GeV/c)") -> dict[str, hist.Hist]:
    """Passed/total histograms of efficiency and purity per species against `variable`.

    **Arguments:**

    - `labels`: true species index per track (-1: another species, which counts against purity).
    - `selected`: species index → boolean selection per track.
    - `variable`, `edges`: the binned quantity (p or pT) and its bin edges.
    """
    labels, variable = np.asarray(labels), np.asarray(variable, np.float64)
    out = {}
    for c, sel in selected.items():
        sp, true = CLASS_NAMES[c], labels == c
        passed = _counts(variable[sel & true], edges, name, label)
        out[f"efficiency_vs_{name}/{sp}_passed"] = passed
        out[f"efficiency_vs_{name}/{sp}_total"] = _counts(variable[true], edges, name, label)
        out[f"purity_vs_{name}/{sp}_passed"] = passed.copy()
        out[f"purity_vs_{name}/{sp}_total"] = _counts(variable[sel], edges, name, label)
    return out


def confusion_histogram(labels, pred) -> hist.Hist:
    """True species (x) against the decision (y): track counts of the π/K/p/e tracks."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    known = labels >= 0
    h = hist.Hist(hist.axis.Integer(0, len(CLASS_NAMES), name="true", label="true species", flow=False),
                  hist.axis.Integer(0, len(CLASS_NAMES), name="predicted", label="predicted species", flow=False))
    return h.fill(labels[known], pred[known])


def momentum_axis(momentum, bins: int = 80) -> hist.axis.Regular:
    """Logarithmic p axis over the tracks' range (linear when it spans less than a decade)."""
    lo, hi = float(np.nanmin(momentum)), float(np.nanmax(momentum))
    hi = np.nextafter(hi, np.inf)
    transform = hist.axis.transform.log if hi > 10 * lo > 0 else None
    return hist.axis.Regular(bins, lo, hi, transform=transform, name="p", label="p (GeV/c)")


def signal_maps(momentum, labels, signal, present, name: str, label: str, limits) -> dict[str, hist.Hist]:
    """2-D densities of a detector signal against p: all tracks where `present`, and per true species."""
    momentum, labels, signal = (np.asarray(a, np.float64) for a in (momentum, labels, signal))
    keep = np.asarray(present, bool) & np.isfinite(signal) & np.isfinite(momentum)
    p_axis = momentum_axis(momentum[np.isfinite(momentum)])
    y_axis = hist.axis.Regular(100, *limits, name=name, label=label)
    out = {f"maps/{name}_vs_p": hist.Hist(p_axis, y_axis).fill(momentum[keep], signal[keep])}
    for c, sp in enumerate(CLASS_NAMES):
        sel = keep & (labels == c)
        out[f"maps/{name}_vs_p_{sp}"] = hist.Hist(p_axis, y_axis).fill(momentum[sel], signal[sel])
    return out


def write_root(path: str | Path, histograms: dict[str, hist.Hist]) -> Path:
    """Write `histograms` (name → `hist.Hist`, `/` making directories) as TH1D/TH2D with uproot, atomically."""
    import uproot

    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            for name, h in histograms.items():
                f[name] = h
    return Path(path)


def report_histograms(predictions, probs: np.ndarray, working_points: list[dict]) -> dict[str, hist.Hist]:
    """Every histogram of `histograms.root` from the report's per-track test predictions.

    **Arguments:**

    - `predictions`: `report.test_predictions_frame`'s columns (`label`, `p`, `pt` and the TOF columns
      where the run wrote them, `tpc_signal`).
    - `probs`: the model's posteriors `[N, 4]`.
    - `working_points`: metrics.json's `working_points` (each its `working_point` text and `threshold`).
    """
    labels, momentum = predictions["label"].to_numpy(), predictions["p"].to_numpy(np.float64)
    pred = probs.argmax(1)
    selections = {"model": {c: pred == c for c in range(len(CLASS_NAMES))}}
    for wp in working_points:
        point = WorkingPoint.parse(wp["working_point"])
        selections["wp_" + point.column.removeprefix("select_")] = {point.index: probs[:, point.index] >= wp["threshold"]}
    variables = [("p", "p (GeV/c)", momentum)]
    if "pt" in predictions:
        variables.append(("pt", "p_{T} (GeV/c)", predictions["pt"].to_numpy(np.float64)))
    out = {}
    for selection, selected in selections.items():
        for name, label, values in variables:
            edges = momentum_edges(values)
            for key, h in selection_histograms(labels, selected, values, edges, name, label).items():
                out[f"{selection}/{key}"] = h
    out["model/confusion"] = confusion_histogram(labels, pred)
    out.update(report_maps(predictions))
    return out


def report_maps(predictions) -> dict[str, hist.Hist]:
    """The TPC dE/dx map (and the TOF β map where the predictions carry β) of the test tracks."""
    labels, momentum = predictions["label"].to_numpy(), predictions["p"].to_numpy(np.float64)
    dedx = predictions["tpc_signal"].to_numpy(np.float64)
    finite = dedx[np.isfinite(dedx)]
    top = max(float(np.percentile(finite, 99.9)) * 1.1, 100.0) if len(finite) else 200.0
    out = signal_maps(momentum, labels, dedx, np.isfinite(dedx), "tpc_dedx", "TPC dE/dx (a.u.)", (0.0, top))
    if "tof_beta" in predictions:
        out.update(signal_maps(momentum, labels, predictions["tof_beta"].to_numpy(np.float64),
                               predictions["has_tof"].to_numpy(bool), "tof_beta", "TOF β", (0.0, 1.2)))
    return out


__all__ = ["report_histograms", "report_maps", "momentum_edges", "selection_histograms", "confusion_histogram", "momentum_axis", "signal_maps",
           "write_root"]

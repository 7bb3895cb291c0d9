"""Standard PID figures (matplotlib, headless). Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc as area_under, roc_curve  # noqa: E402

import mplhep  # noqa: E402

from ..data.schema import CLASS_LABELS, CLASS_NAMES, MASSES_GEV  # noqa: E402
from ..training.metrics import DEFAULT_MOMENTUM_BINS, efficiency_purity_vs_momentum  # noqa: E402
from .histograms import momentum_edges  # noqa: E402
from .working_points import STANDARD_PURITIES, efficiency_purity_curve  # noqa: E402

SPECIES_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
METHOD_STYLES = {"model": dict(color="black", lw=2.0), "oracle": dict(color="tab:purple", ls=":", lw=1.8),
                 "vector_oracle": dict(color="tab:pink", ls=":", lw=1.5),
                 "gbdt": dict(color="tab:green", ls="--"), "bayes_pid": dict(color="tab:orange", ls="-."),
                 "nsigma": dict(color="tab:gray", ls=(0, (1, 1))), "xgboost": dict(color="tab:cyan", ls="--"),
                 "lightgbm": dict(color="tab:olive", ls="--")}


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _momentum_axis(ax, lo: float, hi: float) -> None:
    """Log scale only when the range spans more than a decade (else the ticks collide)."""
    if hi > 10 * lo:
        ax.set_xscale("log")


def _species_panels(axes, labels):
    """(species index, its axis, one-vs-rest truth) per species; a panel whose species is on no
    track (or on every track, leaving no rest) is titled "absent" and skipped."""
    for c, ax in enumerate(axes):
        pos = labels == c
        if not pos.any() or pos.all():
            ax.set_title(f"{CLASS_LABELS[c]} (absent)")
            continue
        yield c, ax, pos


def roc_curves(labels, methods: dict[str, np.ndarray], path, title="") -> Path:
    """One-vs-rest ROC per species; `methods` maps a name to `[N, 4]` scores."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    for c, ax, pos in _species_panels(axes, labels):
        for name, probs in methods.items():
            fpr, tpr, _ = roc_curve(pos, probs[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {area_under(fpr, tpr):.3f})", **METHOD_STYLES.get(name, {}))
        ax.plot([0, 1], [0, 1], color="lightgray", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set(title=f"{CLASS_LABELS[c]} vs rest", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    return _save(fig, path)


def efficiency_purity(labels, preds: dict[str, np.ndarray], momentum, path, bins=DEFAULT_MOMENTUM_BINS,
                      title="") -> Path:
    """Efficiency (top row) and purity (bottom row) vs p per species for each method, with
    Clopper–Pearson 68 % intervals as error bars (drawn with mplhep over the bins' widths)."""
    edges = momentum_edges(momentum, bins)
    lo, hi = edges[0], edges[-1]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    for name, pred in preds.items():
        res = efficiency_purity_vs_momentum(labels, pred, momentum, edges)
        style = METHOD_STYLES.get(name, {})
        for c, sp in enumerate(CLASS_NAMES):
            for row, key in enumerate(("efficiency", "purity")):
                y = np.array([np.nan if v is None else v for v in res[sp][key]])
                band = np.array([[np.nan, np.nan] if v[0] is None else v for v in res[sp][f"{key}_interval"]])
                yerr = np.vstack([y - band[:, 0], band[:, 1] - y])
                mplhep.histplot(y, edges, yerr=yerr, histtype="errorbar", ax=axes[row, c], label=name,
                                color=style.get("color"), markersize=3, capsize=0)
    for c in range(4):
        axes[0, c].set_title(CLASS_LABELS[c])
        for row, key in enumerate(("efficiency", "purity")):
            ax = axes[row, c]
            ax.set_ylim(0, 1.05)
            _momentum_axis(ax, lo, hi)
            ax.grid(alpha=0.3)
            ax.set_ylabel(key)
            if row == 1:
                ax.set_xlabel("p (GeV/c)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def confusion(cm: np.ndarray, path, title="normalised confusion matrix") -> Path:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    im = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]:.3f}", ha="center", va="center", color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xticks(range(4), CLASS_NAMES)
    ax.set_yticks(range(4), CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def training_curves(history, path) -> Path:
    """Loss (train/val), validation accuracy and macro AUC vs epoch from history rows."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    axes[0].plot(epochs, [r["train/loss"] for r in history], label="train")
    axes[0].plot(epochs, [r["val/loss"] for r in history], label="validation")
    axes[0].set(title="loss", xlabel="epoch", yscale="log")
    axes[0].legend()
    for ax, key in zip(axes[1:], ("val/accuracy", "val/macro_auc")):
        ax.plot(epochs, [r.get(key, np.nan) for r in history], color="black")
        if key == "val/accuracy":
            ax.plot(epochs, [r.get("val/balanced_accuracy", np.nan) for r in history], color="gray",
                    label="balanced accuracy")
            ax.legend()
        ax.set(title=key, xlabel="epoch")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def signal_map(maps: dict, name: str, expected, path, title: str) -> Path:
    """A detector signal against p as a 2-D density with a log colour scale (mplhep), all tracks and
    per true species, with each species' expected signal overlaid.

    **Arguments:**

    - `maps`: `histograms.signal_maps`' output for `name`.
    - `expected`: `(p, masses) -> [len(p), 4]` expected signal per species (e.g. Bethe–Bloch), or None.
    """
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 5, figsize=(24, 4.6), sharey=True)
    panels = [("all tracks", maps[f"maps/{name}_vs_p"])] + [
        (f"true {CLASS_LABELS[c]}", maps[f"maps/{name}_vs_p_{sp}"]) for c, sp in enumerate(CLASS_NAMES)]
    for ax, (label, h) in zip(axes, panels):
        if h.values().sum() > 0:
            mplhep.hist2dplot(h, ax=ax, norm=LogNorm(), cbar=ax is axes[-1])  # empty bins stay blank
        p_edges = h.axes[0].edges
        if p_edges[-1] > 10 * p_edges[0] > 0:
            ax.set_xscale("log")
        if expected is not None:
            grid = np.geomspace(p_edges[0], p_edges[-1], 200) if p_edges[0] > 0 else np.linspace(*p_edges[[0, -1]], 200)
            curves = expected(grid, np.asarray(MASSES_GEV))
            for c in range(4):
                ax.plot(grid, curves[:, c], color=SPECIES_COLORS[c], lw=1.2, label=f"expected {CLASS_LABELS[c]}")
        ax.set_ylim(*h.axes[1].edges[[0, -1]])
        ax.set(title=label, xlabel="p (GeV/c)")
    axes[0].set_ylabel(panels[0][1].axes[1].label)
    if expected is not None:
        axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    return _save(fig, path)


def bar_chart(names, values, path, title, xlabel) -> Path:
    order = np.argsort(values)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    ax.barh(np.asarray(names)[order], np.asarray(values)[order], color="tab:blue")
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def reliability_diagram(curves: dict[str, dict], path, title="") -> Path:
    """Per species: observed frequency vs mean predicted probability (one vs rest), bin counts below.

    `curves` maps a label (e.g. "model", "temperature-scaled") to `calibration.reliability(...)`.
    """
    fig, axes = plt.subplots(2, 4, figsize=(16, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    styles = ({"color": "black", "marker": "o"}, {"color": "tab:purple", "marker": "s", "ls": "--"})
    for c, name in enumerate(CLASS_NAMES):
        ax, cnt = axes[0, c], axes[1, c]
        ax.plot([0, 1], [0, 1], color="lightgray", lw=0.8)
        for (label, rel), style in zip(curves.items(), styles):
            r = rel[name]
            conf, freq, count = (np.asarray(r[k], float) for k in ("confidence", "frequency", "count"))
            ok = count > 0
            ax.plot(conf[ok], freq[ok], ms=3, label=f"{label} (ECE {r['ece']:.4f})", **style)
            edges = np.linspace(0, 1, len(count) + 1)
            cnt.step(edges[:-1], np.maximum(count, 0.5), where="post", color=style["color"], alpha=0.7)
        ax.set(title=f"{CLASS_LABELS[c]}", ylabel="observed frequency" if c == 0 else None, xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
        cnt.set_yscale("log")
        cnt.set(xlabel="predicted probability", ylabel="tracks" if c == 0 else None)
    fig.suptitle(title)
    return _save(fig, path)


def purity_vs_efficiency(labels, methods: dict[str, np.ndarray], path, title="") -> Path:
    """Per species, purity vs efficiency of `P(species) >= t` over every threshold t, one curve per
    method (`methods` maps a name to `[N, 4]` scores); the standard purities dotted."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    for c, ax, pos in _species_panels(axes, labels):
        for name, probs in methods.items():
            curve = efficiency_purity_curve(probs[:, c], pos)
            ax.plot(curve["efficiency"], curve["purity"], label=name, **METHOD_STYLES.get(name, {}))
        for purity in STANDARD_PURITIES:
            ax.axhline(purity, color="lightgray", lw=0.8, ls=":")
        ax.set(title=CLASS_LABELS[c], xlabel="efficiency", ylabel="purity" if c == 0 else None, xlim=(0, 1),
               ylim=(max(0.0, pos.mean() - 0.05), 1.005))
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    return _save(fig, path)


__all__ = ["roc_curves", "efficiency_purity", "purity_vs_efficiency", "confusion", "training_curves", "signal_map", "bar_chart",
           "reliability_diagram"]

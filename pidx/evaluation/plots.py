"""Standard PID figures (matplotlib, headless). Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc as area_under, roc_curve  # noqa: E402

from ..data.schema import CLASS_LABELS, CLASS_NAMES  # noqa: E402
from ..training.metrics import DEFAULT_MOMENTUM_BINS, efficiency_purity_vs_momentum  # noqa: E402
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
    """Efficiency (top row) and purity (bottom row) vs p per species for each method."""
    lo, hi = float(np.nanmin(momentum)), float(np.nanmax(momentum))
    edges = np.asarray(bins, dtype=np.float64)
    edges = np.unique(np.concatenate([[lo], edges[(edges > lo) & (edges < hi)], [hi]]))
    if len(edges) < 7:  # a narrow range: finer, equal bins
        edges = np.linspace(lo, hi, 9)
    centers = 0.5 * (edges[1:] + edges[:-1])
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    for name, pred in preds.items():
        res = efficiency_purity_vs_momentum(labels, pred, momentum, edges)
        for c, sp in enumerate(CLASS_NAMES):
            for row, key in enumerate(("efficiency", "purity")):
                y = np.array([np.nan if v is None else v for v in res[sp][key]])
                axes[row, c].plot(centers, y, marker="o", ms=3, label=name, **METHOD_STYLES.get(name, {}))
    for c in range(4):
        axes[0, c].set_title(CLASS_LABELS[c])
        for row, key in enumerate(("efficiency", "purity")):
            ax = axes[row, c]
            ax.set_ylim(0, 1.02)
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


def dedx_map(momentum, signal, labels, pred, path) -> Path:
    """TPC dE/dx vs p coloured by true and by predicted species."""
    ok = np.isfinite(signal)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, cls, title in ((axes[0], labels, "true species"), (axes[1], pred, "predicted species")):
        for c in range(4):
            sel = ok & (cls == c)
            ax.scatter(momentum[sel], signal[sel], s=1, alpha=0.3, color=SPECIES_COLORS[c], label=CLASS_LABELS[c],
                       rasterized=True)
        _momentum_axis(ax, float(np.nanmin(momentum)), float(np.nanmax(momentum)))
        ax.set(xlabel="p (GeV/c)", title=f"TPC dE/dx, {title}")
        ax.legend(markerscale=8, fontsize=8)
    top = np.nanpercentile(signal[ok], 99.5) if ok.any() else 1
    axes[0].set(ylabel="dE/dx (a.u.)", ylim=(20, max(top, 100)))
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


__all__ = ["roc_curves", "efficiency_purity", "purity_vs_efficiency", "confusion", "training_curves", "dedx_map", "bar_chart",
           "reliability_diagram"]

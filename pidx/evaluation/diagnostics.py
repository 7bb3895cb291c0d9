"""Diagnostics a BDT user looks at first: the output on train against test (overtraining), and the
model's inputs per species with their correlations.

- **Overtraining**: per species, the distribution of the model's posterior P(species) for true
  tracks of that species on a train sample and on the test split, with the two-sample
  Kolmogorov–Smirnov p-value (`scipy.stats.ks_2samp`); as hipe4ml's `plot_output_train_test`. A model
  that learned its train tracks by heart scores them higher than tracks it never saw, and the
  p-value falls towards 0.
- **Inputs**: every model input's distribution per true species, over the tracks where its
  detector group is present (hipe4ml's `plot_distr`), and the inputs' correlation matrix
  (`plot_corr`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullLocator

from ..data.schema import CLASS_LABELS, CLASS_NAMES
from . import plots

# Inputs whose importance on simulated tracks can come from how the simulation ties them to species
# rather than from a detector's response: a data–MC risk to check before trusting them on collision data.
DATA_MC_RISKS = {
    **dict.fromkeys(("dcaXY", "dca_xy", "dcaZ", "dca_z"),
                    "DCA separates species through secondaries (feed-down and material) as the simulation "
                    "models them"),
    **dict.fromkeys(("centFT0C",), "centrality enters through the simulated occupancy dependence"),
}


def overtraining(train_probs, train_labels, test_probs, test_labels) -> dict:
    """Per species: Kolmogorov–Smirnov statistic and p-value of P(species) on true tracks, train against test."""
    from scipy.stats import ks_2samp

    train_probs, test_probs = np.asarray(train_probs), np.asarray(test_probs)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    out = {}
    for c, sp in enumerate(CLASS_NAMES):
        a, b = train_probs[train_labels == c, c], test_probs[test_labels == c, c]
        if len(a) and len(b):
            res = ks_2samp(a, b)
            out[sp] = {"ks_statistic": float(res.statistic), "p_value": float(res.pvalue),
                       "train_tracks": int(len(a)), "test_tracks": int(len(b))}
        else:
            out[sp] = {"ks_statistic": None, "p_value": None, "train_tracks": int(len(a)), "test_tracks": int(len(b))}
    return out


def output_train_test(train_probs, train_labels, test_probs, test_labels, ks: dict, path, title="") -> Path:
    """P(species) per true species, train (filled) against test (points), log scale, KS p-value in each panel."""
    import hist
    import mplhep

    fig, axes = plots.plt.subplots(1, 4, figsize=(16, 3.8))
    edges = np.linspace(0.0, 1.0, 41)
    for c, (sp, ax) in enumerate(zip(CLASS_NAMES, axes)):
        for s in range(len(CLASS_NAMES)):  # the output P(c) of every true species: signal and background
            for probs, labels, kind in ((train_probs, train_labels, "train"), (test_probs, test_labels, "test")):
                values = np.asarray(probs)[np.asarray(labels) == s, c]
                if not len(values):
                    continue
                h = hist.Hist(hist.axis.Variable(edges)).fill(values)
                density = h.values() / max(len(values), 1) / np.diff(edges)
                if kind == "train":
                    mplhep.histplot(density, edges, ax=ax, histtype="fill", alpha=0.25, color=plots.SPECIES_COLORS[s],
                                    label=f"{CLASS_NAMES[s]} train")
                else:
                    mplhep.histplot(density, edges, ax=ax, histtype="errorbar", color=plots.SPECIES_COLORS[s],
                                    markersize=2, yerr=False, label=f"{CLASS_NAMES[s]} test")
        p = ks[sp]["p_value"]
        ax.set(yscale="log", xlabel=f"P({CLASS_NAMES[c]})", ylabel="density",
               title=f"{CLASS_LABELS[c]}: KS p = {'–' if p is None else f'{p:.3f}'}")
        ax.yaxis.set_minor_locator(NullLocator())
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    return plots._save(fig, path)


def input_distributions(frame, layout, labels, path, max_tracks: int = 200_000) -> Path:
    """Every model input per true species, over the tracks where its group is present (density, log scale)."""
    labels = np.asarray(labels)
    columns = [(g, c) for g in layout.groups for c in g.columns]
    cols = 6
    rows = -(-len(columns) // cols)
    fig, axes = plots.plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows))
    flat = np.asarray(axes).ravel()
    n = min(len(frame), max_tracks)
    frame, labels = frame.iloc[:n], labels[:n]
    for ax, (group, column) in zip(flat, columns):
        values = frame[column].to_numpy(np.float64)
        present = np.isfinite(values)
        if group.flag is not None and group.flag in frame:
            present &= frame[group.flag].to_numpy().astype(bool)
        if present.any():
            lo, hi = np.percentile(values[present], [0.5, 99.5])
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
            for s in range(len(CLASS_NAMES)):
                v = values[present & (labels == s)]
                if len(v):
                    ax.hist(np.clip(v, edges[0], edges[-1]), bins=edges, density=True, histtype="step",
                            color=plots.SPECIES_COLORS[s], label=CLASS_NAMES[s])
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # 48 panels of unlabelled minor ticks: half the drawing time
        ax.set_title(f"{column} ({group.name})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in flat[len(columns):]:
        ax.axis("off")
    flat[0].legend(fontsize=6)
    return plots._save(fig, path)


def input_correlations(frame, layout, path, max_tracks: int = 200_000) -> tuple[Path, np.ndarray]:
    """The Pearson correlation matrix of the model inputs (pairwise over tracks where both are finite)."""
    columns = [c for g in layout.groups for c in g.columns]
    data = frame[columns].iloc[:max_tracks].astype(np.float64)
    corr = data.corr(min_periods=10).to_numpy()
    fig, ax = plots.plt.subplots(figsize=(0.28 * len(columns) + 3, 0.28 * len(columns) + 2))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=6)
    ax.set_yticks(range(len(columns)), columns, fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("input correlations (Pearson)")
    return plots._save(fig, path), corr


__all__ = ["DATA_MC_RISKS", "overtraining", "output_train_test", "input_distributions", "input_correlations"]

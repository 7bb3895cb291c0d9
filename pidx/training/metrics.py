"""Classification metrics for PID: accuracy, AUC, efficiency (recall), purity (precision).

Inputs are numpy arrays: `labels` (class indices, π K p e) and `probs` `[N, 4]`.
Classes absent from `labels` are left out of macro averages (and reported as None).
A label -1 is a track of another species (a muon, a deuteron, a fake track) kept as
contamination: it counts against the purity of whatever species it is selected as, and is
left out of accuracy, AUC and the confusion matrix, which are about telling π, K, p, e apart.
"""

from __future__ import annotations

import numpy as np

from ..data.schema import CLASS_NAMES, NUM_CLASSES


def accuracy(labels, pred) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(pred)))


def _roc_auc(y_true, score) -> float:
    """Exact ROC AUC, ties counted half: the Mann-Whitney statistic, P(score of a positive > score of
    a negative) + P(tie) / 2, which is what sklearn's `roc_auc_score` gives. Positives and negatives
    are sorted apart and each positive finds its rank among the negatives by binary search, so the
    memory is one copy of the scores: sklearn's curve took about 8 arrays of N, 2 GB for the pooled
    32 M (track, class) scores of an 8 M-track test split."""
    y, s = np.asarray(y_true, dtype=bool), np.asarray(score)
    pos, neg = s[y], s[~y]
    pos.sort()
    neg.sort()
    below = np.searchsorted(neg, pos, side="left").sum(dtype=np.int64)  # negatives scored lower
    not_above = np.searchsorted(neg, pos, side="right").sum(dtype=np.int64)  # lower or tied
    return float((below + not_above) / 2.0 / (float(len(pos)) * float(len(neg))))


def balanced_accuracy(labels, pred) -> float:
    """Mean per-class efficiency over the classes present in `labels`."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    effs = [np.mean(pred[labels == c] == c) for c in range(NUM_CLASSES) if np.any(labels == c)]
    return float(np.mean(effs))


def per_class_auc(labels, probs) -> list[float | None]:
    labels = np.asarray(labels)
    out = []
    for c in range(NUM_CLASSES):
        pos = labels == c
        out.append(float(_roc_auc(pos, probs[:, c])) if 0 < pos.sum() < len(labels) else None)
    return out


def macro_auc(labels, probs) -> float:
    """Unweighted mean of one-vs-rest ROC AUCs over classes present in `labels`."""
    aucs = [a for a in per_class_auc(labels, probs) if a is not None]
    return float(np.mean(aucs)) if aucs else float("nan")


def micro_auc(labels, probs) -> float:
    """ROC AUC of all (track, class) pairs pooled (one-vs-rest, micro average)."""
    labels = np.asarray(labels)
    onehot = np.eye(NUM_CLASSES, dtype=bool)[labels]
    return float(_roc_auc(onehot.ravel(), np.asarray(probs).ravel()))


def confusion_matrix(labels, pred, *, normalize: bool = True) -> np.ndarray:
    """`[true, predicted]` counts, or rows normalised to true-class fractions."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    known = labels >= 0  # another species (-1) has no row
    labels, pred = labels[known], pred[known]
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES))
    identified = pred >= 0  # -1 = unidentified (n-sigma): counts in the row total only
    np.add.at(cm, (labels[identified], pred[identified]), 1)
    if normalize:
        rows = np.bincount(labels, minlength=NUM_CLASSES).astype(float)[:, None]
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    return cm


DEFAULT_MOMENTUM_BINS = (0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)


def clopper_pearson(passed, total, level: float = 0.6827) -> tuple[float | None, float | None]:
    """The central Clopper–Pearson interval of a rate `passed / total` at confidence `level` (default
    one standard deviation, as ROOT's `TEfficiency` default), from `scipy.stats.beta`; (None, None)
    for `total == 0`."""
    from scipy.stats import beta

    if total <= 0:
        return None, None
    alpha = 1.0 - level
    low = 0.0 if passed <= 0 else float(beta.ppf(alpha / 2, passed, total - passed + 1))
    high = 1.0 if passed >= total else float(beta.ppf(1 - alpha / 2, passed + 1, total - passed))
    return low, high


def efficiency_purity_vs_momentum(labels, pred, momentum, bins=DEFAULT_MOMENTUM_BINS) -> dict:
    """Efficiency and purity per species in momentum bins (the standard ALICE PID figure).

    Returns `{"bins": edges, species: {"efficiency": [...], "purity": [...], "n_true": [...],
    "n_selected": [...], "n_passed": [...], "efficiency_interval": [[low, high], ...],
    "purity_interval": [...]}}`, with None where a bin has no true (efficiency) or no selected
    (purity) track; the intervals are Clopper–Pearson at 68.27 % (`clopper_pearson`). A label -1 (another
    species) counts against purity.
    """
    labels, pred, momentum = map(np.asarray, (labels, pred, momentum))
    edges = np.asarray(bins, dtype=np.float64)
    which = np.digitize(momentum, edges) - 1
    out = {"bins": edges.tolist()}
    for c, name in enumerate(CLASS_NAMES):
        rows = {k: [] for k in ("efficiency", "purity", "n_true", "n_selected", "n_passed", "efficiency_interval",
                                "purity_interval")}
        for b in range(len(edges) - 1):
            in_bin = which == b
            true_c, pred_c = in_bin & (labels == c), in_bin & (pred == c)
            tp, n_true, n_sel = int(np.sum(true_c & (pred == c))), int(true_c.sum()), int(pred_c.sum())
            rows["efficiency"].append(tp / n_true if n_true else None)
            rows["purity"].append(tp / n_sel if n_sel else None)
            rows["n_true"].append(n_true)
            rows["n_selected"].append(n_sel)
            rows["n_passed"].append(tp)
            rows["efficiency_interval"].append(list(clopper_pearson(tp, n_true)))
            rows["purity_interval"].append(list(clopper_pearson(tp, n_sel)))
        out[name] = rows
    return out


def classification_metrics(labels, probs, *, pred=None) -> dict:
    """Accuracy, balanced accuracy, macro/micro AUC, per-class AUC, efficiency, purity, F1
    and the normalised confusion matrix.

    **Arguments:**

    - `labels`: true class indices.
    - `probs`: `[N, 4]` scores (for AUC).
    - `pred`: decisions, default `argmax(probs)`; -1 marks an unidentified track.
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1) if pred is None else np.asarray(pred)
    other = labels < 0
    if other.any():
        return _with_contamination(labels, probs, pred, other)
    aucs = per_class_auc(labels, probs)
    per_class = {}
    for c, name in enumerate(CLASS_NAMES):
        tp = int(np.sum((pred == c) & (labels == c)))
        n_true, n_pred = int(np.sum(labels == c)), int(np.sum(pred == c))
        eff = tp / n_true if n_true else None
        pur = tp / n_pred if n_pred else None
        f1 = 2 * eff * pur / (eff + pur) if eff and pur else (0.0 if n_true else None)
        per_class[name] = {"auc": aucs[c], "efficiency": eff, "purity": pur, "f1": f1, "n_true": n_true,
                           "n_selected": n_pred, "efficiency_interval": list(clopper_pearson(tp, n_true)),
                           "purity_interval": list(clopper_pearson(tp, n_pred))}
    return {"accuracy": accuracy(labels, pred), "balanced_accuracy": balanced_accuracy(labels, pred),
            "macro_auc": macro_auc(labels, probs), "micro_auc": micro_auc(labels, probs),
            "n_tracks": int(len(labels)), "per_class": per_class,
            "confusion_normalized": confusion_matrix(labels, pred).round(6).tolist()}


def _with_contamination(labels, probs, pred, other) -> dict:
    """`classification_metrics` of the π/K/p/e tracks, with purities (and F1) that count the tracks of
    other species selected as each species; `contamination` says how many were selected as what."""
    out = classification_metrics(labels[~other], probs[~other], pred=pred[~other])
    for c, name in enumerate(CLASS_NAMES):
        m = out["per_class"][name]
        tp, n_pred = int(np.sum((pred == c) & (labels == c))), int(np.sum(pred == c))
        m["purity_without_contamination"] = m["purity"]
        m["purity"] = tp / n_pred if n_pred else None
        m["n_selected"], m["purity_interval"] = n_pred, list(clopper_pearson(tp, n_pred))
        eff, pur = m["efficiency"], m["purity"]
        m["f1"] = 2 * eff * pur / (eff + pur) if eff and pur else (0.0 if m["n_true"] else None)
    out["contamination"] = {"tracks": int(other.sum()),
                            "selected_as": {name: int(np.sum(pred[other] == c)) for c, name in enumerate(CLASS_NAMES)}}
    return out


__all__ = ["clopper_pearson", "accuracy", "balanced_accuracy", "per_class_auc", "macro_auc", "micro_auc", "confusion_matrix",
           "DEFAULT_MOMENTUM_BINS", "efficiency_purity_vs_momentum", "classification_metrics"]

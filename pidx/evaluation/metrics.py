"""Classification metrics for PID: accuracy, AUC, efficiency (recall), purity (precision).

Inputs are numpy arrays: `labels` (class indices, π K p e) and `probs` `[N, 4]`.
Classes absent from `labels` are left out of macro averages (and reported as None).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ..data.schema import CLASS_NAMES, NUM_CLASSES


def accuracy(labels, pred) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(pred)))


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
        out.append(float(roc_auc_score(pos, probs[:, c])) if 0 < pos.sum() < len(labels) else None)
    return out


def macro_auc(labels, probs) -> float:
    """Unweighted mean of one-vs-rest ROC AUCs over classes present in `labels`."""
    aucs = [a for a in per_class_auc(labels, probs) if a is not None]
    return float(np.mean(aucs)) if aucs else float("nan")


def classification_metrics(labels, probs) -> dict:
    """Accuracy, balanced accuracy, macro AUC and per-class AUC, efficiency, purity, F1."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    aucs = per_class_auc(labels, probs)
    per_class = {}
    for c, name in enumerate(CLASS_NAMES):
        tp = int(np.sum((pred == c) & (labels == c)))
        n_true, n_pred = int(np.sum(labels == c)), int(np.sum(pred == c))
        eff = tp / n_true if n_true else None
        pur = tp / n_pred if n_pred else None
        f1 = 2 * eff * pur / (eff + pur) if eff and pur else (0.0 if n_true else None)
        per_class[name] = {"auc": aucs[c], "efficiency": eff, "purity": pur, "f1": f1, "n_true": n_true}
    return {"accuracy": accuracy(labels, pred), "balanced_accuracy": balanced_accuracy(labels, pred),
            "macro_auc": macro_auc(labels, probs), "n_tracks": int(len(labels)), "per_class": per_class}


__all__ = ["accuracy", "balanced_accuracy", "per_class_auc", "macro_auc", "classification_metrics"]

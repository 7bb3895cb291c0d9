"""Classifier-based reweighting of MC to data, the HEP practice (e.g. hep_ml's GBReweighter, the
"classifier trick" of likelihood-ratio estimation).

A gradient-boosted classifier (scikit-learn's `HistGradientBoostingClassifier`, LightGBM's algorithm)
learns to tell the labelled source tracks (MC) from the unlabelled target tracks (data) by the model
inputs. For a source track with classifier output p, `p / (1 − p) · n_source / n_target` estimates the
density ratio data/MC at its inputs: weighted by it, the MC sample has the data's input distribution.
The probabilities of the source tracks are cross-fitted (each fold scored by a classifier that never
saw it), so the classifier's overfitting does not become weight; the weights are normalised to mean 1
and clipped (a handful of tracks must not carry the sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TrainingError


@dataclass(frozen=True)
class DomainWeights:
    """Per-track weights of the source sample and what they say about the shift.

    - `weights`: `f32[N_source]`, mean 1.
    - `auc`: the cross-fitted domain classifier's ROC AUC (0.5: the inputs do not tell MC from data).
    - `effective_fraction`: (Σw)² / (N Σw²), the share of the sample's statistical power the weights keep.
    - `clipped`: source tracks whose weight was clipped.
    """

    weights: np.ndarray
    auc: float
    effective_fraction: float
    clipped: int

    def summary(self) -> dict:
        return {"domain_auc": self.auc, "effective_fraction": self.effective_fraction, "clipped": self.clipped,
                "max_weight": float(self.weights.max()), "tracks": int(len(self.weights))}


def domain_weights(source, target, *, clip: float = 20.0, folds: int = 2, seed: int = 0,
                   max_fit_tracks: int = 200_000) -> DomainWeights:
    """Weights that make `source`'s input distribution `target`'s.

    **Arguments:**

    - `source`, `target`: `TrackArrays` (or `(features, mask)` pairs) of the same layout, in memory.
    - `clip`: the largest weight (after normalising to mean 1; clipped weights are renormalised).
    - `folds`: cross-fitting folds (>= 2).
    - `seed`: the folds' and the classifier's seed.
    - `max_fit_tracks`: at most this many tracks of each sample train each fold's classifier.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    xs, xt = _inputs(source), _inputs(target)
    if xs.shape[1] != xt.shape[1]:
        raise TrainingError(f"reweighting: the source has {xs.shape[1]} inputs per track, the target {xt.shape[1]}")
    if len(xs) < 2 * folds or len(xt) < 2 * folds:
        raise TrainingError(f"reweighting needs at least {2 * folds} tracks in each sample, got {len(xs)} source "
                            f"and {len(xt)} target tracks")
    if folds < 2 or not clip > 1:
        raise TrainingError(f"reweighting needs folds >= 2 and clip > 1, got {folds}, {clip}")
    rng = np.random.default_rng(seed)
    fold_s, fold_t = rng.integers(0, folds, len(xs)), rng.integers(0, folds, len(xt))
    prob_s, prob_t = np.empty(len(xs)), np.empty(len(xt))
    for k in range(folds):
        train_s, train_t = np.flatnonzero(fold_s != k), np.flatnonzero(fold_t != k)
        train_s = rng.permutation(train_s)[:max_fit_tracks]
        train_t = rng.permutation(train_t)[:max_fit_tracks]
        x = np.concatenate([xs[train_s], xt[train_t]])
        y = np.concatenate([np.zeros(len(train_s)), np.ones(len(train_t))])
        # balanced classes in the fit: p / (1 − p) is then the density ratio itself
        w = np.where(y == 1, len(train_s) / len(train_t), 1.0)
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                             min_samples_leaf=100, l2_regularization=1.0, random_state=seed + k)
        clf.fit(x, y, sample_weight=w)
        prob_s[fold_s == k] = clf.predict_proba(xs[fold_s == k])[:, 1]
        prob_t[fold_t == k] = clf.predict_proba(xt[fold_t == k])[:, 1]
    p = np.clip(prob_s, 1e-6, 1 - 1e-6)
    ratio = p / (1.0 - p)
    weights = ratio / ratio.mean()
    clipped = int(np.sum(weights > clip))
    weights = np.minimum(weights, clip)
    weights = weights / weights.mean()
    auc = float(roc_auc_score(np.r_[np.zeros(len(xs)), np.ones(len(xt))], np.r_[prob_s, prob_t]))
    effective = float(weights.sum() ** 2 / (len(weights) * np.sum(weights**2)))
    return DomainWeights(weights.astype(np.float32), auc, effective, clipped)


def _inputs(arrays) -> np.ndarray:
    """Features and group mask side by side, on the host."""
    features, mask = (arrays.features, arrays.group_mask) if hasattr(arrays, "features") else arrays
    return np.concatenate([np.asarray(features, np.float32), np.asarray(mask, np.float32)], axis=1)


__all__ = ["DomainWeights", "domain_weights"]

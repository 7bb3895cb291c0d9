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
    from sklearn.metrics import roc_auc_score

    xs, xt = _checked_inputs(source, target, folds)
    if folds < 2 or not clip > 1:
        raise TrainingError(f"reweighting needs folds >= 2 and clip > 1, got {folds}, {clip}")
    rng = np.random.default_rng(seed)
    fold_s, fold_t = rng.integers(0, folds, len(xs)), rng.integers(0, folds, len(xt))
    prob_s, prob_t = np.empty(len(xs)), np.empty(len(xt))
    for k in range(folds):
        clf = _domain_classifier(xs[fold_s != k], xt[fold_t != k], rng, max_fit_tracks, seed + k)
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


def domain_auc(source, target, *, seed: int = 0, max_fit_tracks: int = 200_000) -> float:
    """How well the inputs tell `target` from `source`: the ROC AUC of a domain classifier trained on
    half of each sample and scored on the other half (one fit, where `domain_weights` cross-fits every
    track: enough for a diagnostic; 0.5 when the samples look alike).

    **Arguments:** `source`, `target`, `seed` and `max_fit_tracks` as `domain_weights`'s.
    """
    from sklearn.metrics import roc_auc_score

    xs, xt = _checked_inputs(source, target, 2)
    rng = np.random.default_rng(seed)
    half_s, half_t = rng.permutation(len(xs)) % 2 == 0, rng.permutation(len(xt)) % 2 == 0
    clf = _domain_classifier(xs[half_s], xt[half_t], rng, max_fit_tracks, seed)
    scores = clf.predict_proba(np.concatenate([xs[~half_s], xt[~half_t]]))[:, 1]
    return float(roc_auc_score(np.r_[np.zeros((~half_s).sum()), np.ones((~half_t).sum())], scores))


def _checked_inputs(source, target, folds: int):
    xs, xt = _inputs(source), _inputs(target)
    if xs.shape[1] != xt.shape[1]:
        raise TrainingError(f"reweighting: the source has {xs.shape[1]} inputs per track, the target {xt.shape[1]}")
    if len(xs) < 2 * folds or len(xt) < 2 * folds:
        raise TrainingError(f"reweighting needs at least {2 * folds} tracks in each sample, got {len(xs)} source "
                            f"and {len(xt)} target tracks")
    return xs, xt


def _domain_classifier(xs, xt, rng, max_fit_tracks: int, seed: int):
    """A gradient-boosted classifier of source (0) against target (1) on at most `max_fit_tracks` of each,
    the classes balanced in the fit, so that p / (1 − p) is the density ratio itself."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    xs, xt = xs[rng.permutation(len(xs))[:max_fit_tracks]], xt[rng.permutation(len(xt))[:max_fit_tracks]]
    x, y = np.concatenate([xs, xt]), np.concatenate([np.zeros(len(xs)), np.ones(len(xt))])
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                         min_samples_leaf=100, l2_regularization=1.0, random_state=seed)
    return clf.fit(x, y, sample_weight=np.where(y == 1, len(xs) / len(xt), 1.0))


def _inputs(arrays) -> np.ndarray:
    """Features and group mask side by side, on the host."""
    features, mask = (arrays.features, arrays.group_mask) if hasattr(arrays, "features") else arrays
    return np.concatenate([np.asarray(features, np.float32), np.asarray(mask, np.float32)], axis=1)


__all__ = ["DomainWeights", "domain_weights", "domain_auc"]

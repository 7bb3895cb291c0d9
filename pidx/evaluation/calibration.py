"""Calibration: expected calibration error, reliability curves and temperature scaling.

A classifier is calibrated when, among tracks it gives probability q for a species, a
fraction q really are that species. Physics needs this when probabilities are used
as weights (yield extraction, PID efficiency corrections), not only argmax.

- `expected_calibration_error`: top-label ECE, equal-width confidence bins,
  Σ_b (n_b / N) |accuracy_b − confidence_b|.
- `reliability`: per species, one-vs-rest: mean predicted probability, observed
  frequency and count per bin; its ECE is the per-species (classwise) ECE.
- `fit_temperature`: the T minimising the validation negative log-likelihood of
  softmax(log p / T) (convex in 1/T, solved by golden-section search).
- `fit_posterior_map`: the `PosteriorMap` of a trained network: its class weights
  divided out, then a temperature and one bias per species fitted on the validation
  split (bias-corrected temperature scaling, see docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np

from ..data.schema import CLASS_NAMES
from ..errors import DataError
from ..training.posterior import PosteriorMap
from ..training.predictor import apply_temperature

_TINY = 1e-30


def _bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin b holds values in (b/n, (b+1)/n]; 0 goes to the first bin."""
    return np.clip(np.ceil(values * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def _check(probs, labels):
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise DataError(f"probabilities must be [N, C] with N = len(labels); got {probs.shape} and {labels.shape}")
    if len(labels) == 0:
        raise DataError("calibration needs at least one labelled track")
    return probs, labels


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Top-label ECE of `probs[N, C]` against integer `labels[N]`.

    **Arguments:**

    - `probs`: class probabilities, rows summing to 1.
    - `labels`: true class indices.
    - `n_bins`: equal-width bins of the confidence (max probability) on [0, 1].
    """
    probs, labels = _check(probs, labels)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    b = _bin_index(conf, n_bins)
    total = 0.0
    for i in np.unique(b):
        sel = b == i
        total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total / len(labels))


def reliability(probs, labels, n_bins: int = 15) -> dict[str, dict]:
    """Per species (one vs rest): `{"confidence", "frequency", "count"}` per bin, and its `ece`.

    Empty bins hold NaN confidence and frequency and count 0.
    """
    probs, labels = _check(probs, labels)
    out = {}
    for c, name in enumerate(CLASS_NAMES[: probs.shape[1]]):
        p, hit = probs[:, c], (labels == c).astype(np.float64)
        b = _bin_index(p, n_bins)
        count = np.bincount(b, minlength=n_bins).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = np.bincount(b, p, n_bins) / count
            freq = np.bincount(b, hit, n_bins) / count
        filled = count > 0
        ece = float(np.sum(count[filled] * np.abs(freq[filled] - conf[filled])) / len(p))
        out[name] = {"confidence": conf.tolist(), "frequency": freq.tolist(), "count": count.astype(int).tolist(),
                     "ece": ece}
    return out


def negative_log_likelihood(probs, labels) -> float:
    probs, labels = _check(probs, labels)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], _TINY))))


def fit_temperature(probs, labels, *, bounds=(0.05, 20.0), tol: float = 1e-6) -> float:
    """The temperature minimising the NLL of `apply_temperature(probs, T)` on (`probs`, `labels`)."""
    probs, labels = _check(probs, labels)
    logp = np.log(np.maximum(probs, _TINY))
    true = logp[np.arange(len(labels)), labels]

    def nll(beta):  # beta = 1/T; convex in beta
        z = beta * logp
        zmax = z.max(1)
        return float(np.mean(zmax + np.log(np.exp(z - zmax[:, None]).sum(1)) - beta * true))

    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return float(1.0 / ((a + b) / 2.0))


POSTERIOR_METHODS = ("bias_temperature", "temperature", "weights_only")


def fit_posterior_map(raw_probs, labels, *, class_weights, train_priors, method: str = "bias_temperature",
                      max_iter: int = 500) -> PosteriorMap:
    """The map from a network's raw probabilities to posteriors, fitted on (`raw_probs`, `labels`).

    **Arguments:**

    - `raw_probs`, `labels`: the network's outputs on the validation split, and the truth.
    - `class_weights`: the weights the loss used (divided out exactly; see `PosteriorMap.undoing`).
    - `train_priors`: the training sample's species abundances (kept in the map for re-weighting).
    - `method`: `bias_temperature` (a temperature and one bias per species minimising the NLL;
      convex, solved with L-BFGS), `temperature` (the temperature only) or `weights_only`.
    """
    if method not in POSTERIOR_METHODS:
        raise ValueError(f"posterior method must be one of {list(POSTERIOR_METHODS)}, got {method!r}")
    raw_probs, labels = _check(raw_probs, labels)
    base = PosteriorMap.undoing(class_weights, train_priors=None if train_priors is None else tuple(train_priors))
    if method == "weights_only":
        return base
    if method == "temperature":
        t = fit_temperature(base(raw_probs), labels)
        return PosteriorMap(class_weights=base.class_weights, temperature=t, train_priors=base.train_priors)
    from scipy.optimize import minimize  # lazy: scipy is slow to import

    z = base.logits(raw_probs)  # log q − log w
    onehot = np.eye(z.shape[1])[labels]

    def nll_and_grad(theta):  # theta = (1/T, b_1..b_{C-1}); b_0 = 0 (softmax is shift invariant)
        a, b = theta[0], np.concatenate([[0.0], theta[1:]])
        logits = a * z + b
        logits -= logits.max(1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(1, keepdims=True))
        logp = logits - log_norm
        diff = np.exp(logp) - onehot
        grad = np.concatenate([[np.mean(np.sum(diff * z, 1))], diff[:, 1:].mean(0)])
        return float(-np.mean(np.sum(onehot * logp, 1))), grad

    theta0 = np.concatenate([[1.0], np.zeros(z.shape[1] - 1)])
    fit = minimize(nll_and_grad, theta0, jac=True, method="L-BFGS-B",
                   bounds=[(1e-3, 1e3)] + [(-30.0, 30.0)] * (z.shape[1] - 1), options={"maxiter": max_iter})
    a, b = float(fit.x[0]), np.concatenate([[0.0], fit.x[1:]])
    return PosteriorMap(class_weights=base.class_weights, temperature=1.0 / a, bias=tuple(b),
                        train_priors=base.train_priors)


def calibration_summary(probs, labels, n_bins: int = 15) -> dict:
    """ECE, classwise ECE, NLL and the per-species reliability bins (for metrics.json)."""
    rel = reliability(probs, labels, n_bins)
    return {"ece": expected_calibration_error(probs, labels, n_bins), "nll": negative_log_likelihood(probs, labels),
            "classwise_ece": {k: v["ece"] for k, v in rel.items()}, "bins": n_bins, "reliability": rel}


__all__ = ["expected_calibration_error", "reliability", "apply_temperature", "negative_log_likelihood",
           "fit_temperature", "POSTERIOR_METHODS", "fit_posterior_map", "calibration_summary"]

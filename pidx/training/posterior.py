"""From what a network outputs to posteriors P(species | track) a physicist can use.

A network trained with class weights `w` learns `q(c|x) ∝ w_c · P(c|x)`, and the focal
loss bends q further. `PosteriorMap` undoes both on the probabilities:

    z_c  = log q_c − log w_c                 (the class weighting undone, exactly)
    z'_c = z_c / T + b_c                     (recalibration, fitted on the validation split)
    z''_c = z'_c + log π'_c − log π_c        (other abundances π' than the training sample's π)
    P(c|x) = softmax(z'')

With `T = 1, b = 0` and no abundances, a model trained with plain cross-entropy and no
class weights is unchanged. Fitting `T` and `b` is `pidx.evaluation.calibration.fit_posterior_map`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ..data.schema import CLASS_NAMES, NUM_CLASSES

_TINY = 1e-30


def _vector(values, what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.asarray(values, np.float64).ravel())
    if len(out) != NUM_CLASSES or not all(np.isfinite(out)):
        raise ValueError(f"{what} needs {NUM_CLASSES} finite values ({', '.join(CLASS_NAMES)}), got {list(values)}")
    return out


def abundances(values, what: str = "abundances") -> tuple[float, ...]:
    """Species abundances (π, K, p, e) as a tuple: positive, summing to 1 within 1e-3.

    **Arguments:**

    - `values`: a sequence of four numbers or a mapping `{"pi": …, "ka": …, "pr": …, "el": …}`.
    - `what`: how errors name them.
    """
    if isinstance(values, Mapping):
        unknown = sorted(set(values) - set(CLASS_NAMES))
        missing = [c for c in CLASS_NAMES if c not in values]
        if unknown or missing:
            raise ValueError(f"{what} need exactly the species {', '.join(CLASS_NAMES)}; "
                             + (f"unknown {unknown}" if unknown else f"missing {missing}"))
        values = [values[c] for c in CLASS_NAMES]
    out = _vector(values, what)
    if min(out) <= 0 or abs(sum(out) - 1.0) > 1e-3:
        raise ValueError(f"{what} must be > 0 and sum to 1 (within 1e-3), got "
                         + ", ".join(f"{c}={v:g}" for c, v in zip(CLASS_NAMES, out)) + f" (sum {sum(out):g})")
    return tuple(v / sum(out) for v in out)


@dataclasses.dataclass(frozen=True)
class PosteriorMap:
    """Raw model probabilities `[N, 4]` → posteriors `[N, 4]` (see the module docstring).

    **Arguments:**

    - `class_weights`: the class weights the loss used (divided out); ones for none.
    - `temperature`, `bias`: the recalibration fitted on the validation split.
    - `train_priors`: the species abundances of the training sample (the posteriors' priors).
    - `priors`: other abundances to re-weight to; None keeps the training sample's.
    """

    class_weights: tuple[float, ...] = (1.0,) * NUM_CLASSES
    temperature: float = 1.0
    bias: tuple[float, ...] = (0.0,) * NUM_CLASSES
    train_priors: tuple[float, ...] | None = None
    priors: tuple[float, ...] | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        set_("class_weights", _vector(self.class_weights, "class weights"))
        if min(self.class_weights) <= 0:
            raise ValueError(f"class weights must be > 0, got {list(self.class_weights)}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        set_("temperature", float(self.temperature))
        set_("bias", _vector(self.bias, "bias"))
        if self.train_priors is not None:
            set_("train_priors", abundances(self.train_priors, "training abundances"))
        if self.priors is not None:
            if self.train_priors is None:
                raise ValueError("re-weighting to other abundances needs the training sample's abundances")
            set_("priors", abundances(self.priors, "abundances"))

    @classmethod
    def undoing(cls, class_weights, **fields) -> "PosteriorMap":
        """The map dividing out the weights a loss (or a tree's sample weights) used. A weight of 0
        marks a species absent from training: the model never learned it and there is nothing to
        divide out, so it counts as 1. `fields`: the other fields."""
        w = np.asarray(class_weights, np.float64)
        return cls(class_weights=tuple(np.where(w > 0, w, 1.0)), **fields)

    def logit_shift(self) -> np.ndarray:
        """The constant `c` of `z'' = log q / T + c` (one per species)."""
        shift = -np.log(self.class_weights) / self.temperature + np.asarray(self.bias)
        if self.priors is not None:
            shift = shift + np.log(self.priors) - np.log(self.train_priors)
        return shift

    def logits(self, raw_probs) -> np.ndarray:
        """The posteriors' log-probabilities up to a constant per track."""
        logq = np.log(np.maximum(np.asarray(raw_probs, np.float64), _TINY))
        return logq / self.temperature + self.logit_shift()

    def __call__(self, raw_probs) -> np.ndarray:
        z = self.logits(raw_probs)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def with_priors(self, priors: Sequence[float] | Mapping[str, float] | None) -> "PosteriorMap":
        """The same map re-weighting to `priors` (None: the training sample's abundances)."""
        return dataclasses.replace(self, priors=None if priors is None else abundances(priors))

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PosteriorMap":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown posterior-map fields {unknown}; known: {sorted(known)}")
        return cls(**d)


def corrected_nll(raw_probs, labels, class_weights) -> float:
    """Mean −log P(true species | track) with the class weighting undone: the validation
    quantity the built-in recipes monitor (class weights do not move it, unlike the loss)."""
    probs = PosteriorMap.undoing(class_weights)(raw_probs)
    labels = np.asarray(labels)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], _TINY))))


__all__ = ["PosteriorMap", "abundances", "corrected_nll"]

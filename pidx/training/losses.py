"""Losses and class weighting.

Losses are small frozen dataclasses (hashable, so jit treats them as static) called as
`loss(logits, labels, class_weights)` on a batch; they work from `log_softmax` for
numerical stability. Class weights are computed from the train split before the first
step and passed to the jitted step as an array (they live in the train state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..data.schema import CLASS_NAMES, NUM_CLASSES


def _weighted_mean(per_sample, labels, class_weights, weights=None):
    """mean_i w_{y_i} · t_i · ℓ_i over the batch (t: per-track weights, 1 when not given)."""
    w = class_weights[labels]
    if weights is not None:
        w = w * weights
    return jnp.sum(w * per_sample) / per_sample.shape[0]


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
    """Softmax cross-entropy with per-sample class weights and optional per-track weights t_i:
    mean_i w_{y_i} · t_i · (−log p_{y_i})."""

    def __call__(self, logits: Float[Array, "batch class"], labels: Int[Array, " batch"],
                 class_weights: Float[Array, " class"], weights: Float[Array, " batch"] | None = None):
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
        return _weighted_mean(nll, labels, class_weights, weights)


@dataclasses.dataclass(frozen=True)
class FocalLoss:
    """Focal loss (Lin et al. 2017): −α_y (1 − p_y)^γ log p_y, times the class weight (and the per-track
    weight, when given).

    **Arguments:**

    - `gamma`: focusing parameter (γ = 0 and α = 1 give cross-entropy).
    - `alpha`: a scalar (the seed used 0.25) or one value per class (π, K, p, e).
    """

    gamma: float = 2.0
    alpha: float | tuple[float, ...] = 0.25

    def __post_init__(self):
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if isinstance(self.alpha, (list, tuple)):
            if len(self.alpha) != NUM_CLASSES:
                raise ValueError(f"alpha needs one value per class {list(CLASS_NAMES)}, got {list(self.alpha)}")
            object.__setattr__(self, "alpha", tuple(float(a) for a in self.alpha))

    def __call__(self, logits: Float[Array, "batch class"], labels: Int[Array, " batch"],
                 class_weights: Float[Array, " class"], weights: Float[Array, " batch"] | None = None):
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        logp_y = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
        p_y = jnp.exp(logp_y)
        alpha = jnp.asarray(self.alpha, jnp.float32)
        alpha_y = alpha[labels] if alpha.ndim else alpha
        # γ = 0 is exactly cross-entropy (no 0**0 or gradient surprises at p = 1)
        modulator = 1.0 if self.gamma == 0 else (1.0 - p_y) ** self.gamma
        return _weighted_mean(-alpha_y * modulator * logp_y, labels, class_weights, weights)


LOSSES = {"focal": FocalLoss, "cross_entropy": CrossEntropy}


def make_loss(name: str = "focal", **kwargs):
    if name not in LOSSES:
        raise ValueError(f"loss name must be one of {sorted(LOSSES)}, got {name!r}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"loss '{name}': {exc}") from None


def compute_class_weights(mode: str | Sequence[float] | None, class_counts: np.ndarray) -> np.ndarray:
    """Class weights from the train split's class counts.

    **Arguments:**

    - `mode`: `"none"`/`None` (all 1), `"balanced"` (n / (C · n_c), as scikit-learn;
      absent classes get 0), or an explicit list `[w_pi, w_ka, w_pr, w_el]`.
    - `class_counts`: tracks per class in the train split.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if mode is None or mode == "none":
        return np.ones(NUM_CLASSES, np.float32)
    if mode == "balanced":
        present = counts > 0
        w = np.zeros(NUM_CLASSES)
        w[present] = counts.sum() / (present.sum() * counts[present])
        return w.astype(np.float32)
    if isinstance(mode, str):
        raise ValueError(f"class_weights must be 'none', 'balanced' or a list of {NUM_CLASSES} "
                          f"numbers, got {mode!r}")
    w = np.asarray(mode, dtype=np.float64)
    if w.shape != (NUM_CLASSES,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"class_weights list needs {NUM_CLASSES} finite non-negative numbers "
                          f"({', '.join(CLASS_NAMES)}), got {list(mode)}")
    return w.astype(np.float32)


__all__ = ["CrossEntropy", "FocalLoss", "LOSSES", "make_loss", "compute_class_weights"]

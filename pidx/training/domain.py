"""Domain-adversarial training as a pidx objective: DANN (Ganin et al., JMLR 17 (2016) 59) and, with
`conditional=True`, its class-conditional form CDAN (Long et al., NeurIPS 2018).

A domain classifier learns to tell the labelled source tracks (MC) from the unlabelled target tracks
(data) by the model's representation (the input of its classifier head); between the two sits a
gradient reversal, so the same step trains the model to classify the source tracks and to make the
two samples' representations indistinguishable. The reversal's weight follows Ganin's ramp,
`λ(p) = weight · (2 / (1 + exp(−10 p)) − 1)` over the training progress `p`, so early steps (when
the representation means nothing yet) are not pushed around. CDAN's classifier sees the outer product
of the representation and the predicted class probabilities instead, so it aligns each species'
tracks between the samples rather than the two samples as a whole (a kaon of the data next to the
kaons of MC, not anywhere among the MC tracks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..data.schema import NUM_CLASSES
from .losses import CrossEntropy
from .objectives import Objective, representation_size


@jax.custom_vjp
def gradient_reversal(x, scale):
    """Identity forward; the backward pass multiplies the gradient by `−scale`."""
    return x


def _reversal_fwd(x, scale):
    return x, scale


def _reversal_bwd(scale, g):
    return -scale * g, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


def reversal_ramp(progress, weight: float, gamma: float = 10.0):
    """Ganin's schedule of the reversal weight: `weight · (2 / (1 + exp(−γ p)) − 1)`, 0 at p = 0."""
    return weight * (2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0)


class DANN(Objective):
    """Classification of the source tracks plus a domain classifier behind a gradient reversal.

    **Arguments:**

    - `loss`: the classification loss (default cross-entropy; per-track and class weights apply).
    - `weight`: the reversal weight λ reached at the end of training (Ganin's ramp from 0).
    - `hidden`: widths of the domain classifier's hidden layers.
    - `ramp`: whether λ ramps up (`False`: λ = `weight` from the first step).
    - `conditional`: CDAN (Long et al.): the domain classifier sees `p ⊗ h`, the outer product of the
      model's class probabilities `p` (held fixed, as in Long et al.'s code) and its representation
      `h`, instead of `h`.

    Logs `domain_loss` (binary cross-entropy of the domain classifier), `domain_accuracy` and
    `reversal` (λ). A domain accuracy near 0.5 means the representations of the two samples look
    alike to the classifier.
    """

    loss: Any = eqx.field(static=True)
    weight: float = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    ramp: bool = eqx.field(static=True)
    conditional: bool = eqx.field(static=True)
    needs_target = True
    log_names = ("domain_loss", "domain_accuracy", "reversal")

    def __init__(self, loss=None, *, weight: float = 1.0, hidden: Sequence[int] = (64,), ramp: bool = True,
                 conditional: bool = False):
        if not weight >= 0:
            raise ValueError(f"the reversal weight must be >= 0, got {weight!r}")
        if not hidden or any(int(h) < 1 for h in hidden) or len(set(hidden)) != 1:
            raise ValueError(f"the domain classifier needs hidden layers of one width >= 1, got {list(hidden)!r}")
        self.loss = CrossEntropy() if loss is None else loss
        self.weight, self.hidden, self.ramp = float(weight), tuple(int(h) for h in hidden), bool(ramp)
        self.conditional = bool(conditional)

    def init(self, model, state, *, key):
        size = representation_size(model, state) * (NUM_CLASSES if self.conditional else 1)
        return eqx.nn.MLP(size, "scalar", width_size=self.hidden[0], depth=len(self.hidden), key=key)

    def __call__(self, params, forward, batch, *, key):
        src = forward(batch.source, representation=True)
        tgt = forward(batch.target, representation=True)
        loss = self.loss(src.logits, batch.source.label, batch.class_weights, batch.source.weight)
        lam = reversal_ramp(batch.progress, self.weight) if self.ramp else jnp.float32(self.weight)
        features = [conditioned(o.logits, o.representation) if self.conditional else o.representation
                    for o in (src, tgt)]
        reps = gradient_reversal(jnp.concatenate(features), lam)
        domain = jnp.concatenate([jnp.zeros(src.logits.shape[0]), jnp.ones(tgt.logits.shape[0])])
        logit = jax.vmap(params)(reps)
        domain_loss = jnp.mean(jnp.logaddexp(0.0, logit) - domain * logit)  # binary cross-entropy from logits
        accuracy = jnp.mean((logit > 0) == (domain > 0.5))
        return loss + domain_loss, {"domain_loss": domain_loss, "domain_accuracy": accuracy, "reversal": lam}


def conditioned(logits, representation):
    """CDAN's multilinear map `p ⊗ h` per track, `[N, C · R]`; no gradient reaches the logits through it."""
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    return (probs[:, :, None] * representation[:, None, :]).reshape(logits.shape[0], -1)


__all__ = ["gradient_reversal", "reversal_ramp", "conditioned", "DANN"]

"""An objective of a user's own, imported by path from a recipe in tests/test_objectives.py."""

import equinox as eqx
import jax
import jax.numpy as jnp

from pidx.training.losses import CrossEntropy
from pidx.training.objectives import Objective


class LabelSmoothing(Objective):
    """Cross-entropy against labels smoothed by `smoothing` (uniform over the classes)."""

    loss: CrossEntropy = eqx.field(static=True)
    smoothing: float = eqx.field(static=True)
    log_names = ("smoothed_nll",)

    def __init__(self, smoothing: float = 0.1):
        self.loss, self.smoothing = CrossEntropy(), float(smoothing)

    def __call__(self, params, forward, batch, *, key):
        src = batch.source
        logp = jax.nn.log_softmax(forward(src).logits)
        target = jax.nn.one_hot(src.label, logp.shape[-1]) * (1 - self.smoothing) + self.smoothing / logp.shape[-1]
        per_track = -jnp.sum(target * logp, axis=-1) * batch.class_weights[src.label] * src.weight
        loss = jnp.mean(per_track)
        return loss, {"smoothed_nll": loss}

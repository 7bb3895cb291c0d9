"""Per-track uncertainty: predictive entropy, ensemble disagreement, MC dropout.

Given S probability samples per track (ensemble members, or forward passes with dropout
left on), with mean p̄:

- `entropy` H(p̄) = −Σ p̄ log p̄ (nats): total uncertainty, high where species overlap;
- `mutual_information` H(p̄) − mean_s H(p_s): the part due to the model not knowing
  (members disagree), the quantity that grows off the training distribution;
- `disagreement`: fraction of samples whose class differs from the class of p̄.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import PidxError
from ..models.base import batched_forward


def entropy(probs) -> np.ndarray:
    """Entropy in nats along the last axis."""
    p = np.asarray(probs, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def sample_uncertainty(samples) -> dict[str, np.ndarray]:
    """`entropy`, `mutual_information`, `disagreement` of probability samples `[S, N, C]`."""
    samples = np.asarray(samples, np.float64)
    mean = samples.mean(0)
    h = entropy(mean)
    return {"entropy": h, "mutual_information": np.maximum(h - entropy(samples).mean(0), 0.0),
            "disagreement": np.mean(samples.argmax(-1) != mean.argmax(-1)[None], axis=0)}


def with_dropout(model):
    """`model` in inference mode (BatchNorm on running statistics) but with dropout on."""
    is_dropout = lambda x: isinstance(x, eqx.nn.Dropout)  # noqa: E731
    model = eqx.nn.inference_mode(model)
    drops = [x for x in jax.tree.leaves(model, is_leaf=is_dropout) if is_dropout(x) and x.p > 0]
    if not drops:
        raise PidxError(f"{type(model).__name__} has no dropout layer with p > 0: MC dropout cannot sample it "
                        "(use an ensemble, trainer.ensemble: K, instead)")
    return jax.tree.map(lambda d: eqx.nn.Dropout(d.p, inference=False) if is_dropout(d) and d.p > 0 else d,
                        model, is_leaf=is_dropout)


@eqx.filter_jit
def _mc_batch(model, state, x, mask, keys):
    def one(key):
        track_keys = jax.random.split(key, x.shape[0])
        logits = batched_forward(model, x, mask, state, track_keys)[0]
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    return jax.vmap(one)(keys)


def mc_dropout_probs(model, state, features, group_mask, *, samples: int = 30, seed: int = 0,
                     batch_size: int = 16384) -> np.ndarray:
    """`[samples, N, C]` probabilities with dropout active (Gal & Ghahramani's MC dropout).

    **Arguments:**

    - `model`, `state`: a trained single model and its state.
    - `features`, `group_mask`: preprocessed inputs (`TrackArrays.features`, `.group_mask`).
    - `samples`: forward passes per track.
    - `seed`: the dropout masks' seed (same seed, same samples).
    - `batch_size`: tracks per jitted call.
    """
    if samples < 2:
        raise PidxError(f"MC dropout needs at least 2 samples, got {samples}")
    mc = with_dropout(model)
    n = features.shape[0]
    out = []
    root = jax.random.PRNGKey(seed)
    for i, start in enumerate(range(0, n, batch_size)):
        stop = min(start + batch_size, n)
        if stop - start < batch_size and start:  # pad the tail to the compiled batch shape
            pad = batch_size - (stop - start)
            x = jnp.pad(features[start:stop], ((0, pad), (0, 0)))
            m = jnp.pad(group_mask[start:stop], ((0, pad), (0, 0)), constant_values=True)
        else:
            x, m, pad = features[start:stop], group_mask[start:stop], 0
        keys = jax.random.split(jax.random.fold_in(root, i), samples)
        probs = np.asarray(_mc_batch(mc, state, x, m, keys))
        out.append(probs[:, : probs.shape[1] - pad] if pad else probs)
    return np.concatenate(out, axis=1)


__all__ = ["entropy", "sample_uncertainty", "with_dropout", "mc_dropout_probs"]

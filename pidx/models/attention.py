"""Masked multi-head self-attention over a track's few detector-group tokens.

The weights are an `eqx.nn.MultiheadAttention`'s (checkpoints and the ONNX export read them there);
`masked_self_attention` computes what that module computes for one track's `[G, d]` tokens, in a form
that stays fast once vmapped over a batch of tracks:

- each projection is `tokens @ W.T`, which vmaps to one `[batch·G, d] × [d, d]` product with the
  batch axis leading (the module's `W @ token` per token leaves a transposed `[d, batch·G]` result
  that XLA copies back);
- the scores and the weighted sum of values are batched products (`einsum`) over the track's G
  groups, with the heads as a batch axis; for at most 4 groups and heads at most 32 wide (the legacy
  layout at d = 64) they are broadcast products summed over the head width instead, which XLA runs
  faster on a CPU there than G × G matrix products that small, and slower beyond: its `[G, G, d]`
  intermediate grows with G² (measured with benchmarks/fse_profile.py, both layouts).

Both forms are the same mathematics as `eqx.nn.MultiheadAttention` (tested to float tolerance).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

# the broadcast form's domain (see the module docstring): few groups, narrow heads
BROADCAST_MAX_GROUPS, BROADCAST_MAX_WIDTH = 4, 32


def dense(layer: eqx.nn.Linear, x: Float[Array, "*rows in"]) -> Float[Array, "*rows out"]:
    """`layer` applied to each row of `x`, as `x @ W.T + b` (one product, rows leading)."""
    y = x @ layer.weight.T
    return y if layer.bias is None else y + layer.bias


def masked_self_attention(attention: eqx.nn.MultiheadAttention, tokens: Float[Array, "group dim"],
                          key_mask: Bool[Array, " group"]) -> Float[Array, "group dim"]:
    """Every token attends to the tokens where `key_mask` is true (at least one must be).

    **Arguments:**

    - `attention`: the module whose weights to use (its `dropout` is not applied: the FSE models
      build it without).
    - `tokens`: one track's group tokens `[G, d]` (queries, keys and values alike).
    - `key_mask`: `[G]`, which tokens may be attended to.
    """
    groups = tokens.shape[0]
    heads = attention.num_heads
    q, k, v = (dense(p, tokens).reshape(groups, heads, -1)
               for p in (attention.query_proj, attention.key_proj, attention.value_proj))
    width = q.shape[-1]
    q = q / math.sqrt(width)
    lowest = jnp.finfo(q.dtype).min
    softmax_dtype = jnp.promote_types(q.dtype, jnp.float32)  # as equinox: at least f32 under bf16
    if groups <= BROADCAST_MAX_GROUPS and width <= BROADCAST_MAX_WIDTH:
        scores = jnp.where(key_mask[None, :, None], (q[:, None] * k[None]).sum(-1), lowest)  # [query, key, head]
        weights = jax.nn.softmax(scores.astype(softmax_dtype), axis=1).astype(q.dtype)
        out = (weights[..., None] * v[None]).sum(1)  # [query, head, width]
    else:
        scores = jnp.where(key_mask[None, None, :], jnp.einsum("qhc,khc->hqk", q, k), lowest)
        weights = jax.nn.softmax(scores.astype(softmax_dtype), axis=-1).astype(q.dtype)
        out = jnp.einsum("hqk,khc->qhc", weights, v)
    return dense(attention.output_proj, out.reshape(groups, -1))


__all__ = ["BROADCAST_MAX_GROUPS", "BROADCAST_MAX_WIDTH", "dense", "masked_self_attention"]

"""Masked multi-head self-attention over a track's few detector-group tokens.

The weights are an `eqx.nn.MultiheadAttention`'s (checkpoints and the ONNX export read them there);
`masked_self_attention` computes what that module computes for one track's `[G, d]` tokens, in a form
that stays fast once vmapped over a batch of tracks:

- each projection is `tokens @ W.T`, which vmaps to one `[batch·G, d] × [d, d]` product with the
  batch axis leading (the module's `W @ token` per token leaves a transposed `[d, batch·G]` result
  that XLA copies back);
- the scores and the weighted sum of values over the G ≤ 8 groups are broadcast products summed over
  the head width when a head is narrow (≤ 32), and batched products (`einsum`) when it is wider. With
  so few groups each is a 7 × 7 matrix product per track and head, far too small for a matrix-product
  kernel: on a CPU the narrow-head form trains the recipes' FSE (d = 64, 4 heads) about 1.3× faster,
  the batched form the seed's (d = 256) faster (benchmarks/fse_profile.py).

Both forms are the same mathematics as `eqx.nn.MultiheadAttention` (tested to float tolerance).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

NARROW_HEAD = 32  # head width up to which the scores are broadcast products (see the module docstring)


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
    if width <= NARROW_HEAD:
        scores = jnp.where(key_mask[None, :, None], (q[:, None] * k[None]).sum(-1), lowest)  # [query, key, head]
        weights = jax.nn.softmax(scores.astype(softmax_dtype), axis=1).astype(q.dtype)
        out = (weights[..., None] * v[None]).sum(1)  # [query, head, width]
    else:
        scores = jnp.where(key_mask[None, None, :], jnp.einsum("qhc,khc->hqk", q, k), lowest)
        weights = jax.nn.softmax(scores.astype(softmax_dtype), axis=-1).astype(q.dtype)
        out = jnp.einsum("hqk,khc->qhc", weights, v)
    return dense(attention.output_proj, out.reshape(groups, -1))


__all__ = ["NARROW_HEAD", "dense", "masked_self_attention"]

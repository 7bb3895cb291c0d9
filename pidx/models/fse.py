"""Feature Set Embedding + attention over detector groups (Phase 0 and Phase 1).

```
x ──split by FeatureLayout──▶ group g columns ──embed_g──▶ token_g ∈ R^d   (zeroed if g missing)
tokens [G, d] ──masked multi-head self-attention (keys = present groups)──▶ attn
h = LayerNorm(tokens + attn);  h = sigmoid(Dense(h)) ⊙ h          (gated fusion)
pooled = mean of h over present groups                            (masked pooling)
Phase 1: e = embed(availability pattern);  pooled = FiLM_e(pooled ⊙ σ(Dense(e)));  concat [pooled, e]
head: Dense(128)-ReLU-Dropout → Dense(64)-ReLU-Dropout → Dense(C)
```

Groups are data (`FeatureLayout`): a layout with a TRD group gets a TRD token with no
code change. To embed a group differently, pass a `group_embedding`: a built-in name
(`dense`, `mlp`: `pidx.models.embeddings`) or a factory
(`(group, in_size, hidden_dim, activation, *, key) -> eqx.Module`); the models are final
and composed of `FSEEncoder` + `ClassifierHead`, never subclassed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..data.schema import NUM_CLASSES, FeatureLayout
from .attention import dense, masked_self_attention
from .base import PIDModel, activation, linear_stack, split_key
from .embeddings import STACKABLE, StackedGroupEmbeddings
from .embeddings import group_embedding as _group_embedding


class ClassifierHead(eqx.Module):
    """Dense-ReLU-Dropout stack ending in a Dense to the class logits."""

    layers: tuple[eqx.nn.Linear, ...]
    dropouts: tuple[eqx.nn.Dropout, ...]

    def __init__(self, in_size: int, hidden: Sequence[int], num_classes: int, dropout: float, *, key):
        self.layers = linear_stack([in_size, *hidden, num_classes], key=key)
        self.dropouts = tuple(eqx.nn.Dropout(dropout) for _ in hidden)

    def __call__(self, x, *, key=None):
        for layer, drop, k in zip(self.layers[:-1], self.dropouts, split_key(key, len(self.dropouts))):
            x = drop(jax.nn.relu(layer(x)), key=k)
        return self.layers[-1](x)


def token_norm(norm: eqx.nn.LayerNorm, tokens):
    """`norm` applied to each of the `[G, d]` tokens, as `eqx.nn.LayerNorm` computes it (statistics in at
    least f32), written over the token axis at once: vmapping the module per token costs XLA copies."""
    dtype = jnp.promote_types(tokens.dtype, jnp.float32)
    x = tokens.astype(dtype)
    mean = x.mean(-1, keepdims=True)
    out = (x - mean) * jax.lax.rsqrt(jnp.maximum(0.0, x.var(-1, keepdims=True)) + norm.eps)
    if norm.use_weight:
        out = norm.weight.astype(dtype) * out
    if norm.use_bias:
        out = out + norm.bias.astype(dtype)
    return out.astype(tokens.dtype)


def model_subkeys(key):
    """The five subkeys of an FSE model's key: embeddings, attention, gate (the encoder's), head and
    the pattern layers (Phase 1). The encoder and the model draw them from the same key."""
    return jax.random.split(key, 5)


class FSEEncoder(eqx.Module):
    """Group tokens → masked attention → LayerNorm + residual → gated fusion → masked mean `[d]`.

    **Arguments:**

    - `layout`: detector groups; one token per group.
    - `hidden_dim`, `num_heads`: token width d and attention heads (must divide d).
    - `activation`: passed to the group embeddings.
    - `group_embedding`: a name of `GROUP_EMBEDDINGS`, an import path or a factory of one group's
      embedding module.
    - `key`: the model's initialisation key (see `model_subkeys`).
    """

    layout: FeatureLayout = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    embeddings: StackedGroupEmbeddings | tuple[eqx.Module, ...]
    attention: eqx.nn.MultiheadAttention
    norm: eqx.nn.LayerNorm
    gate: eqx.nn.Linear

    def __init__(self, layout: FeatureLayout, hidden_dim: int, num_heads: int, activation: Callable,
                 group_embedding: str | Callable = "dense", *, key):
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.layout, self.hidden_dim = layout, hidden_dim
        k_emb, k_att, k_gate = model_subkeys(key)[:3]
        factory = _group_embedding(group_embedding)
        modules = tuple(factory(g, len(g.columns), hidden_dim, activation, key=k)
                        for g, k in zip(layout.groups, jax.random.split(k_emb, layout.num_groups)))
        # the built-in embeddings run as one batched product per layer; a custom factory's group by group
        self.embeddings = StackedGroupEmbeddings(modules, layout.group_slices) if factory in STACKABLE else modules
        self.attention = eqx.nn.MultiheadAttention(num_heads, hidden_dim, key=k_att)
        self.norm = eqx.nn.LayerNorm(hidden_dim)
        self.gate = eqx.nn.Linear(hidden_dim, hidden_dim, key=k_gate)

    def group_embeddings(self) -> tuple[eqx.Module, ...]:
        """One embedding module per group, in the layout's order (the stacked weights unstacked)."""
        if isinstance(self.embeddings, StackedGroupEmbeddings):
            return self.embeddings.unstack()
        return self.embeddings

    def tokens(self, x, mask, *, key=None):
        """Group tokens `[G, d]`, zero where the group is missing."""
        if isinstance(self.embeddings, StackedGroupEmbeddings):
            toks = self.embeddings(x)
        else:
            keys = split_key(key, self.layout.num_groups)
            toks = jnp.stack([emb(x[a:b], key=k)
                              for emb, (a, b), k in zip(self.embeddings, self.layout.group_slices, keys)])
        return toks * mask[:, None].astype(x.dtype)

    def __call__(self, x, mask, *, key=None):
        k_tok = split_key(key, 2)[0]  # (the second key was the attention's, which draws none)
        toks = self.tokens(x, mask, key=k_tok)
        # Every query attends to present groups only; a track always has kinematics,
        # but guard anyway so an all-missing mask cannot produce NaN.
        key_mask = mask | ~jnp.any(mask)
        attn = masked_self_attention(self.attention, toks, key_mask)
        h = token_norm(self.norm, toks + attn)
        h = jax.nn.sigmoid(dense(self.gate, h)) * h
        w = mask.astype(h.dtype)
        return (h * w[:, None]).sum(0) / jnp.maximum(w.sum(), 1.0)


class FSEAttention(PIDModel):
    """FSE+Attention, Phase 0: `FSEEncoder` → `ClassifierHead`.

    **Arguments:**

    - `layout`: detector groups; one token per group.
    - `hidden_dim`: token width d (the seed README says 256, its code used 64).
    - `num_heads`: attention heads (must divide `hidden_dim`).
    - `head_hidden`: widths of the classifier head.
    - `dropout`: dropout rate in the head.
    - `activation`: activation of the group embeddings (a name or a callable).
    - `group_embedding`: `"dense"` (one Dense layer, the default), `"mlp"` (two), or a factory
      `(group, in_size, hidden_dim, activation, *, key) -> Module` of one group's embedding, or
      its `package.module:name` import path.
    - `num_classes`, `key`: output size and initialisation key.
    """

    layout: FeatureLayout = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    train_block: ClassVar[int | None] = 512  # each track's own: no batch statistics
    encoder: FSEEncoder
    head: ClassifierHead

    def __init__(self, layout: FeatureLayout, *, hidden_dim: int = 64, num_heads: int = 4,
                 head_hidden: Sequence[int] = (128, 64), dropout: float = 0.5, activation: str | Callable = "relu",
                 group_embedding: str | Callable = "dense", num_classes: int = NUM_CLASSES, key):
        self.layout, self.num_classes = layout, num_classes
        self.encoder = FSEEncoder(layout, hidden_dim, num_heads, _activation(activation), group_embedding, key=key)
        self.head = ClassifierHead(hidden_dim, head_hidden, num_classes, dropout, key=model_subkeys(key)[3])

    def forward(self, x, mask, state, *, key=None):
        logits, _, state = self.represent(x, mask, state, key=key)
        return logits, state

    def represent(self, x, mask, state, *, key=None):
        k_enc, k_head = split_key(key, 2)
        pooled = self.encoder(x, mask, key=k_enc)
        return self.head(pooled, key=k_head), pooled, state


class DetectorAwareFSE(PIDModel):
    """FSE+Attention, Phase 1 (detector-aware).

    Phase 0 plus an embedding `e` of the detector-availability pattern (the raw group
    mask) that (a) gates the pooled representation, (b) scales and shifts it (FiLM) and
    (c) is concatenated before the head. In training, `group_dropout` hides each
    present, flagged group with that probability, so the model learns to cope when a
    detector is missing.

    **Arguments:** as `FSEAttention`, plus `pattern_dim` (size of `e`) and
    `group_dropout` (0 disables it; the seed-faithful recipes use 0.08).
    """

    layout: FeatureLayout = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    train_block: ClassVar[int | None] = 512  # each track's own: no batch statistics
    encoder: FSEEncoder
    head: ClassifierHead
    pattern_embed: eqx.nn.Linear
    pattern_gate: eqx.nn.Linear
    pattern_scale: eqx.nn.Linear
    pattern_shift: eqx.nn.Linear
    pattern_dim: int = eqx.field(static=True)
    group_dropout: float = eqx.field(static=True)
    inference: bool

    def __init__(self, layout: FeatureLayout, *, hidden_dim: int = 64, num_heads: int = 4,
                 head_hidden: Sequence[int] = (128, 64), dropout: float = 0.5, activation: str | Callable = "relu",
                 group_embedding: str | Callable = "dense", pattern_dim: int = 16,
                 group_dropout: float = 0.0, num_classes: int = NUM_CLASSES, key):
        if not 0.0 <= group_dropout < 1.0:
            raise ValueError(f"group_dropout must be in [0, 1), got {group_dropout}")
        self.layout, self.num_classes = layout, num_classes
        self.pattern_dim, self.group_dropout, self.inference = pattern_dim, group_dropout, False
        *_, k_head, k_pattern = model_subkeys(key)
        k1, k2, k3, k4 = jax.random.split(k_pattern, 4)
        self.encoder = FSEEncoder(layout, hidden_dim, num_heads, _activation(activation), group_embedding, key=key)
        self.head = ClassifierHead(hidden_dim + pattern_dim, head_hidden, num_classes, dropout, key=k_head)
        g = layout.num_groups
        self.pattern_embed = eqx.nn.Linear(g, pattern_dim, key=k1)
        self.pattern_gate = eqx.nn.Linear(pattern_dim, hidden_dim, key=k2)
        self.pattern_scale = eqx.nn.Linear(pattern_dim, hidden_dim, key=k3)
        self.pattern_shift = eqx.nn.Linear(pattern_dim, hidden_dim, key=k4)

    def drop_groups(self, mask, key):
        """Randomly hide present flagged groups (never the always-present ones)."""
        droppable = jnp.array([g.flag is not None for g in self.layout.groups])
        hide = jax.random.bernoulli(key, self.group_dropout, mask.shape) & droppable
        return mask & ~hide

    def forward(self, x, mask, state, *, key=None):
        logits, _, state = self.represent(x, mask, state, key=key)
        return logits, state

    def represent(self, x, mask, state, *, key=None):
        k_drop, k_enc, k_head = split_key(key, 3)
        if self.group_dropout > 0 and not self.inference and k_drop is not None:
            mask = self.drop_groups(mask, k_drop)
        pooled = self.encoder(x, mask, key=k_enc)
        e = jax.nn.relu(self.pattern_embed(mask.astype(x.dtype)))
        pooled = pooled * jax.nn.sigmoid(self.pattern_gate(e))
        pooled = pooled * (1.0 + self.pattern_scale(e)) + self.pattern_shift(e)
        rep = jnp.concatenate([pooled, e])
        return self.head(rep, key=k_head), rep, state


_activation = activation  # the parameter named `activation` shadows the function inside __init__

__all__ = ["ClassifierHead", "FSEEncoder", "FSEAttention",
           "DetectorAwareFSE"]

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
code change. Override `make_group_embedding` to embed one group differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ..data.schema import NUM_CLASSES, DetectorGroup, FeatureLayout
from .base import PIDModel, activation, split_key


class GroupEmbedding(eqx.Module):
    """Dense(in_g → d) + activation: the default embedding of one detector group."""

    linear: eqx.nn.Linear
    act_name: str = eqx.field(static=True)

    def __init__(self, in_size: int, hidden_dim: int, act_name: str = "relu", *, key):
        self.linear = eqx.nn.Linear(in_size, hidden_dim, key=key)
        self.act_name = act_name

    def __call__(self, x, *, key=None):
        return activation(self.act_name)(self.linear(x))


class ClassifierHead(eqx.Module):
    """Dense-ReLU-Dropout stack ending in a Dense to the class logits."""

    layers: tuple[eqx.nn.Linear, ...]
    dropouts: tuple[eqx.nn.Dropout, ...]

    def __init__(self, in_size: int, hidden: Sequence[int], num_classes: int, dropout: float, *, key):
        sizes = [in_size, *hidden, num_classes]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.dropouts = tuple(eqx.nn.Dropout(dropout) for _ in hidden)

    def __call__(self, x, *, key=None):
        for layer, drop, k in zip(self.layers[:-1], self.dropouts, split_key(key, len(self.dropouts))):
            x = drop(jax.nn.relu(layer(x)), key=k)
        return self.layers[-1](x)


class FSEAttention(PIDModel):
    """FSE+Attention, Phase 0.

    **Arguments:**

    - `layout`: detector groups; one token per group.
    - `hidden_dim`: token width d (the seed README says 256, its code used 64).
    - `num_heads`: attention heads (must divide `hidden_dim`).
    - `head_hidden`: widths of the classifier head.
    - `dropout`: dropout rate in the head.
    - `activation`: activation of the group embeddings.
    - `num_classes`, `key`: output size and initialisation key.
    """

    embeddings: tuple[eqx.Module, ...]
    attention: eqx.nn.MultiheadAttention
    norm: eqx.nn.LayerNorm
    gate: eqx.nn.Linear
    head: ClassifierHead
    hidden_dim: int = eqx.field(static=True)

    def __init__(self, layout: FeatureLayout, *, hidden_dim: int = 64, num_heads: int = 4,
                 head_hidden: Sequence[int] = (128, 64), dropout: float = 0.5, activation: str = "relu",
                 num_classes: int = NUM_CLASSES, key):
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.layout, self.num_classes, self.hidden_dim = layout, num_classes, hidden_dim
        k_emb, k_att, k_gate, k_head, k_extra = jax.random.split(key, 5)
        self.embeddings = tuple(
            self.make_group_embedding(g, len(g.columns), hidden_dim, activation, key=k)
            for g, k in zip(layout.groups, jax.random.split(k_emb, layout.num_groups)))
        self.attention = eqx.nn.MultiheadAttention(num_heads, hidden_dim, key=k_att)
        self.norm = eqx.nn.LayerNorm(hidden_dim)
        self.gate = eqx.nn.Linear(hidden_dim, hidden_dim, key=k_gate)
        self.head = ClassifierHead(self.head_input_size(), head_hidden, num_classes, dropout, key=k_head)
        self.init_extra(key=k_extra)

    # -------------------------------------------------------------- extension points
    def make_group_embedding(self, group: DetectorGroup, in_size: int, hidden_dim: int, act_name: str,
                             *, key) -> eqx.Module:
        """The module that turns one group's columns into its token; override per group."""
        return GroupEmbedding(in_size, hidden_dim, act_name, key=key)

    def head_input_size(self) -> int:
        return self.hidden_dim

    def init_extra(self, *, key) -> None:
        """Hook for subclasses that add parameters (called at the end of __init__)."""

    # -------------------------------------------------------------- forward
    def tokens(self, x, mask, *, key=None):
        """Group tokens `[G, d]`, zero where the group is missing."""
        keys = split_key(key, self.layout.num_groups)
        toks = [emb(x[a:b], key=k) for emb, (a, b), k in zip(self.embeddings, self.layout.group_slices, keys)]
        return jnp.stack(toks) * mask[:, None].astype(x.dtype)

    def encode(self, x, mask, *, key=None):
        """Attention, LayerNorm + residual, gated fusion, masked mean pooling → `[d]`."""
        k_tok, k_att = split_key(key, 2)
        toks = self.tokens(x, mask, key=k_tok)
        # Every query attends to present groups only; a track always has kinematics,
        # but guard anyway so an all-missing mask cannot produce NaN.
        key_mask = mask | ~jnp.any(mask)
        attn = self.attention(toks, toks, toks, mask=jnp.broadcast_to(key_mask[None, :], (len(mask),) * 2),
                              key=k_att)
        h = jax.vmap(self.norm)(toks + attn)
        h = jax.nn.sigmoid(jax.vmap(self.gate)(h)) * h
        w = mask.astype(h.dtype)
        return (h * w[:, None]).sum(0) / jnp.maximum(w.sum(), 1.0)

    def forward(self, x, mask, state, *, key=None):
        k_enc, k_head = split_key(key, 2)
        return self.head(self.encode(x, mask, key=k_enc), key=k_head), state


class DetectorAwareFSE(FSEAttention):
    """FSE+Attention, Phase 1 (detector-aware).

    Phase 0 plus an embedding `e` of the detector-availability pattern (the raw group
    mask) that (a) gates the pooled representation, (b) scales and shifts it (FiLM) and
    (c) is concatenated before the head. In training, `group_dropout` hides each
    present, flagged group with that probability, so the model learns to cope when a
    detector is missing.

    **Arguments:** as `FSEAttention`, plus `pattern_dim` (size of `e`) and
    `group_dropout` (0 disables it; the seed-faithful recipes use 0.08).
    """

    pattern_embed: eqx.nn.Linear
    pattern_gate: eqx.nn.Linear
    pattern_scale: eqx.nn.Linear
    pattern_shift: eqx.nn.Linear
    pattern_dim: int = eqx.field(static=True)
    group_dropout: float = eqx.field(static=True)
    inference: bool = False

    def __init__(self, layout: FeatureLayout, *, pattern_dim: int = 16, group_dropout: float = 0.0,
                 **kwargs):
        if not 0.0 <= group_dropout < 1.0:
            raise ValueError(f"group_dropout must be in [0, 1), got {group_dropout}")
        self.pattern_dim, self.group_dropout, self.inference = pattern_dim, group_dropout, False
        super().__init__(layout, **kwargs)

    def head_input_size(self) -> int:
        return self.hidden_dim + self.pattern_dim

    def init_extra(self, *, key) -> None:
        g, d, p = self.layout.num_groups, self.hidden_dim, self.pattern_dim
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.pattern_embed = eqx.nn.Linear(g, p, key=k1)
        self.pattern_gate = eqx.nn.Linear(p, d, key=k2)
        self.pattern_scale = eqx.nn.Linear(p, d, key=k3)
        self.pattern_shift = eqx.nn.Linear(p, d, key=k4)

    def drop_groups(self, mask, key):
        """Randomly hide present flagged groups (never the always-present ones)."""
        droppable = jnp.array([g.flag is not None for g in self.layout.groups])
        hide = jax.random.bernoulli(key, self.group_dropout, mask.shape) & droppable
        return mask & ~hide

    def forward(self, x, mask, state, *, key=None):
        k_drop, k_enc, k_head = split_key(key, 3)
        if self.group_dropout > 0 and not self.inference and k_drop is not None:
            mask = self.drop_groups(mask, k_drop)
        pooled = self.encode(x, mask, key=k_enc)
        e = jax.nn.relu(self.pattern_embed(mask.astype(x.dtype)))
        pooled = pooled * jax.nn.sigmoid(self.pattern_gate(e))
        pooled = pooled * (1.0 + self.pattern_scale(e)) + self.pattern_shift(e)
        return self.head(jnp.concatenate([pooled, e]), key=k_head), state


__all__ = ["GroupEmbedding", "ClassifierHead", "FSEAttention", "DetectorAwareFSE"]

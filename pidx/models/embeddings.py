"""Group embeddings of the FSE models: how one detector group's columns become its token.

A factory `(group, in_size, hidden_dim, activation, *, key) -> eqx.Module` is called once per
group; the built-in ones are named in `GROUP_EMBEDDINGS` (a recipe's `model.group_embedding`):

- `dense`: Dense(in_g → d) + activation, the seed's embedding.
- `mlp`: Dense(in_g → 2d) + activation → Dense(2d → d) + activation. A detector's evidence is a
  log-likelihood, quadratic in its n-sigma values in the Gaussian core and flatter in the tails;
  one Dense + ReLU per group approximates it with too few pieces, and the head cannot undo that
  after the groups are pooled (measured in docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax

from ..data.schema import DetectorGroup
from ..utils import import_object


class GroupEmbedding(eqx.Module):
    """Dense(in_g → d) + activation: the default embedding of one detector group."""

    linear: eqx.nn.Linear
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_size: int, hidden_dim: int, activation: Callable = jax.nn.relu, *, key):
        self.linear = eqx.nn.Linear(in_size, hidden_dim, key=key)
        self.activation = activation

    def __call__(self, x, *, key=None):
        return self.activation(self.linear(x))


class MLPGroupEmbedding(eqx.Module):
    """Dense(in_g → width) + activation → Dense(width → d) + activation.

    **Arguments:**

    - `in_size`, `hidden_dim`: the group's column count and the token width d.
    - `activation`: after both layers.
    - `width`: the hidden layer's width (default 2d).
    - `key`: PRNG key for initialisation (keyword-only).
    """

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_size: int, hidden_dim: int, activation: Callable = jax.nn.relu, *,
                 width: int | None = None, key):
        width = 2 * hidden_dim if width is None else width
        k_hidden, k_out = jax.random.split(key)
        self.hidden = eqx.nn.Linear(in_size, width, key=k_hidden)
        self.out = eqx.nn.Linear(width, hidden_dim, key=k_out)
        self.activation = activation

    def __call__(self, x, *, key=None):
        return self.activation(self.out(self.activation(self.hidden(x))))


def dense_group_embedding(group: DetectorGroup, in_size: int, hidden_dim: int, activation: Callable,
                          *, key) -> eqx.Module:
    """The `dense` factory: a `GroupEmbedding` for every group."""
    return GroupEmbedding(in_size, hidden_dim, activation, key=key)


def mlp_group_embedding(group: DetectorGroup, in_size: int, hidden_dim: int, activation: Callable,
                        *, key) -> eqx.Module:
    """The `mlp` factory: an `MLPGroupEmbedding` of width 2d for every group."""
    return MLPGroupEmbedding(in_size, hidden_dim, activation, key=key)


GROUP_EMBEDDINGS: dict[str, Callable] = {"dense": dense_group_embedding, "mlp": mlp_group_embedding}


def group_embedding(spec: str | Callable) -> Callable:
    """The factory `spec` names: one of `GROUP_EMBEDDINGS`, a `package.module:name` import path,
    or the callable itself (ValueError naming `spec` and the built-in names otherwise)."""
    if callable(spec):
        return spec
    if spec in GROUP_EMBEDDINGS:
        return GROUP_EMBEDDINGS[spec]
    try:
        factory = import_object(spec, kind="group embedding")
    except ValueError as exc:
        raise ValueError(f"{exc}; built-in ones: {', '.join(sorted(GROUP_EMBEDDINGS))}") from None
    if not callable(factory):
        raise ValueError(f"group embedding {spec!r} is not callable")
    return factory


__all__ = ["GroupEmbedding", "MLPGroupEmbedding", "dense_group_embedding", "mlp_group_embedding",
           "GROUP_EMBEDDINGS", "group_embedding"]

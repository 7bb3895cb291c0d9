"""Group embeddings of the FSE models: how one detector group's columns become its token.

A factory `(group, in_size, hidden_dim, activation, *, key) -> eqx.Module` is called once per
group; the built-in ones are named in `GROUP_EMBEDDINGS` (a recipe's `model.group_embedding`):

- `dense`: Dense(in_g → d) + activation, the seed's embedding.
- `mlp`: Dense(in_g → 2d) + activation → Dense(2d → d) + activation. A detector's evidence is a
  log-likelihood, quadratic in its n-sigma values in the Gaussian core and flatter in the tails;
  one Dense + ReLU per group approximates it with too few pieces, and the head cannot undo that
  after the groups are pooled (measured in docs/models.md).

The FSE encoder computes the built-in embeddings of all groups together, as one batched product per
layer (`StackedGroupEmbeddings`: the groups' weights stacked and zero-padded to the widest group),
not one small product per group; a custom factory's modules are called one group at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

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


def _layers(module: eqx.Module) -> tuple[eqx.nn.Linear, ...]:
    return (module.linear,) if type(module) is GroupEmbedding else (module.hidden, module.out)


def _pad_rows(weight, rows: int):
    pad = [(0, 0)] * weight.ndim
    pad[-2] = (0, rows - weight.shape[-2])
    return jnp.pad(weight, pad)


def _linear_of(weight, bias) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` holding `weight` `[..., out, in]` and `bias` `[..., out]`."""
    out_size, in_size = weight.shape[-2:]
    layer = eqx.nn.Linear(in_size, out_size, key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, bias))


class StackedGroupEmbeddings(eqx.Module):
    """The built-in embeddings of every group (all `GroupEmbedding` or all `MLPGroupEmbedding`)
    computed as one batched product per layer.

    Layer l of group g is `weights[l][g]` (`[fan_in, fan_out]`) and `biases[l][g]`; the first layer's
    rows past a group's own column count are zero, and each group's columns are sliced out and padded with
    zeros into a `[group, widest group]` block, so padded entries neither contribute nor
    receive a gradient: the same mathematics as calling each group's module on its columns.

    **Arguments:**

    - `modules`: one built-in embedding module per group, in the layout's group order.
    - `group_slices`: the `(start, stop)` columns of each group in the feature vector.
    """

    weights: tuple[Float[Array, "group fan_in fan_out"], ...]
    biases: tuple[Float[Array, "group fan_out"], ...]
    kind: type = eqx.field(static=True)
    group_slices: tuple[tuple[int, int], ...] = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)

    def __init__(self, modules: tuple[eqx.Module, ...], group_slices: tuple[tuple[int, int], ...]):
        kinds = {type(m) for m in modules}
        if len(kinds) != 1 or not kinds <= {GroupEmbedding, MLPGroupEmbedding}:
            raise ValueError("StackedGroupEmbeddings takes GroupEmbedding or MLPGroupEmbedding modules of one "
                             f"type, got {sorted(k.__name__ for k in kinds)}")
        if len({m.activation for m in modules}) != 1:
            raise ValueError("StackedGroupEmbeddings needs one activation for every group")
        self.kind, self.activation = kinds.pop(), modules[0].activation
        self.group_slices = tuple((int(a), int(b)) for a, b in group_slices)
        weights, biases = [], []
        for layers in zip(*(_layers(m) for m in modules)):
            # group axis third from last, so members of an ensemble (a leading axis) stack alike
            fan_in = max(layer.weight.shape[-1] for layer in layers)
            weights.append(jnp.stack([_pad_rows(jnp.swapaxes(layer.weight, -1, -2), fan_in) for layer in layers],
                                     axis=-3))
            biases.append(jnp.stack([layer.bias for layer in layers], axis=-2))
        self.weights, self.biases = tuple(weights), tuple(biases)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.group_slices)

    def __call__(self, x: Float[Array, "feature"], *, key=None) -> Float[Array, "group hidden"]:
        if len(self.weights) > 1 and jax.default_backend() == "cpu":
            return self._group_by_group(x)
        # [group, widest] from static slices padded with zeros (a gather here is 2x slower on a CPU under vmap)
        widest = max(self.sizes)
        h = jnp.stack([jnp.pad(x[a:b], (0, widest - (b - a))) for a, b in self.group_slices])
        for weight, bias in zip(self.weights, self.biases):
            h = self.activation(jnp.einsum("gi,gio->go", h, weight) + bias)
        return h

    def _group_by_group(self, x):
        """The same products one group at a time, from slices of the stacked weights. On a CPU, XLA runs
        the two-layer (`mlp`) embeddings this way faster than as batched products, whose vmapped group
        axis costs copies between the layers (benchmarks/fse_profile.py, the main recipe's epoch time);
        the one-layer (`dense`) embeddings are faster batched there too."""
        tokens = []
        for g, (a, b) in enumerate(self.group_slices):
            h = x[a:b]
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                h = self.activation(h @ (weight[g, :b - a] if i == 0 else weight[g]) + bias[g])
            tokens.append(h)
        return jnp.stack(tokens)

    def unstack(self) -> tuple[eqx.Module, ...]:
        """The per-group modules these weights hold (for export and for inspection)."""
        modules = []
        for g, size in enumerate(self.sizes):
            layers = []
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                w = weight[..., g, :size, :] if i == 0 else weight[..., g, :, :]
                layers.append(_linear_of(jnp.swapaxes(w, -1, -2), bias[..., g, :]))
            if self.kind is GroupEmbedding:
                module = GroupEmbedding(size, layers[0].out_features, self.activation, key=jax.random.PRNGKey(0))
                modules.append(eqx.tree_at(lambda m: m.linear, module, layers[0]))
            else:
                module = MLPGroupEmbedding(size, layers[1].out_features, self.activation,
                                           width=layers[0].out_features, key=jax.random.PRNGKey(0))
                modules.append(eqx.tree_at(lambda m: (m.hidden, m.out), module, tuple(layers)))
        return tuple(modules)


STACKABLE = (dense_group_embedding, mlp_group_embedding)


def _is_stacked(node) -> bool:
    return isinstance(node, StackedGroupEmbeddings)


def per_group_form(tree):
    """`tree` (a model, or a pytree shaped like one: optimizer moments, averaged weights) with every
    `StackedGroupEmbeddings` replaced by its tuple of per-group modules: the form checkpoints written
    before the embeddings were stacked hold."""
    return jax.tree.map(lambda n: n.unstack() if _is_stacked(n) else n, tree, is_leaf=_is_stacked)


def has_stacked_embeddings(tree) -> bool:
    return any(_is_stacked(n) for n in jax.tree.leaves(tree, is_leaf=_is_stacked))


def from_per_group_form(like, per_group):
    """The inverse of `per_group_form`: `per_group` (read in that form) restacked where `like` holds a
    `StackedGroupEmbeddings`, with `like`'s static layout (group columns, activation)."""
    def restack(node, old):
        if not _is_stacked(node):
            return old
        if not jax.tree.leaves(old):  # a filtered-out subtree (no arrays): nothing to convert
            return node
        return StackedGroupEmbeddings(old, node.group_slices)

    return jax.tree.map(restack, like, per_group, is_leaf=_is_stacked)


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


__all__ = ["GroupEmbedding", "MLPGroupEmbedding", "StackedGroupEmbeddings", "dense_group_embedding",
           "mlp_group_embedding", "GROUP_EMBEDDINGS", "group_embedding", "per_group_form", "from_per_group_form",
           "has_stacked_embeddings"]

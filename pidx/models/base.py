"""The model contract every pidx architecture follows.

A model is an `eqx.Module` called on **one track**; `batched_forward` vmaps it over a
batch (axis name `"batch"`, which BatchNorm uses), so nothing downstream special-cases
an architecture:

```python
logits, state = model(x, mask, state, key=key)
# x: Float[Array, "feature"], mask: Bool[Array, "group"], state: eqx.nn.State
# logits: Float[Array, "class"]
```

`key` is keyword-only and `None` at inference. Training vs inference is switched the
Equinox way, with `eqx.nn.inference_mode(model)` (dropout and group dropout off,
BatchNorm on running statistics).

Models follow Equinox's "abstract or final" rule: `PIDModel` is abstract (it declares
`layout`, `num_classes` and `forward`); every concrete model holds all its fields and its
`__init__` in one class and cannot be subclassed. Extend by composition (e.g. the FSE
models take a `group_embedding` factory) or by a new `PIDModel` subclass.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
from beartype import beartype
from jaxtyping import Array, Bool, Float, PRNGKeyArray, jaxtyped

from ..data.schema import NUM_CLASSES, FeatureLayout

BATCH_AXIS = "batch"

# Runtime shape/dtype checks at trace time (never per batch: they run while jit traces).
typechecked = jaxtyped(typechecker=beartype)

ACTIVATIONS: dict[str, Callable] = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu,
                                    "tanh": jax.nn.tanh}


def activation(name_or_fn: str | Callable) -> Callable:
    """The activation function named `name_or_fn` (one of `ACTIVATIONS`), or the callable itself."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {name_or_fn!r}")
    return ACTIVATIONS[name_or_fn]


def is_abstract(cls: type) -> bool:
    """Whether an `eqx.Module` class is abstract (abstract methods or `AbstractVar`s left)."""
    return bool(getattr(cls, "__abstractmethods__", ()) or getattr(cls, "__abstractvars__", ()))


class PIDModel(eqx.Module):
    """Abstract base: holds the feature layout and checks inputs against it.

    Concrete models declare `layout` and `num_classes` as fields and implement
    `forward(x, mask, state, *, key)`; `__call__` validates shapes (jaxtyping + beartype,
    at trace time) first. A concrete model is final: subclassing it is an error.
    """

    layout: eqx.AbstractVar[FeatureLayout]
    num_classes: eqx.AbstractVar[int]
    # Rows a CPU train step computes at a time (`Trainer(step_block="auto")`): its loss and gradient
    # are averaged over equal blocks of the batch, sized so a block's activations stay in cache.
    # None: the whole batch at once, as a model whose tracks see each other (BatchNorm) needs.
    train_block: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for base in cls.__mro__[1:]:
            if issubclass(base, PIDModel) and not is_abstract(base):
                raise TypeError(f"{cls.__name__} subclasses {base.__name__}, a concrete (final) pidx model; "
                                f"compose it or subclass pidx.models.PIDModel instead")

    @typechecked
    def __call__(
        self,
        x: Float[Array, "feature"],
        mask: Bool[Array, "group"],
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "class"], eqx.nn.State]:
        if x.shape[0] != self.layout.num_features:
            raise ValueError(f"{type(self).__name__} expects {self.layout.num_features} features "
                             f"({', '.join(self.layout.feature_names)}), got {x.shape[0]}")
        if mask.shape[0] != self.layout.num_groups:
            raise ValueError(f"{type(self).__name__} expects a mask over {self.layout.num_groups} groups "
                             f"{self.layout.group_names}, got {mask.shape[0]}")
        return self.forward(x, mask, state, key=key)

    @abc.abstractmethod
    def forward(self, x, mask, state, *, key=None):
        """Logits of one track and the updated state."""

    def represent(self, x, mask, state, *, key=None):
        """`(logits, representation, state)`: the logits and the input of the classifier head, for
        objectives that attach to the representation (e.g. `pidx.training.objectives.DANN`). The built-in
        models define it; a model of one's own defines it to train with such an objective."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its representation: define "
                                  "represent(x, mask, state, *, key) -> (logits, representation, state)")


def batched_forward(model, x, mask, state, keys=None):
    """vmap the one-track `model` over a batch (BatchNorm reduces over `"batch"`).

    **Arguments:**

    - `model`: a `PIDModel` (or one ensemble member).
    - `x`, `mask`: `[N, feature]` features and `[N, group]` group mask.
    - `state`: the model's `eqx.nn.State`, shared by the batch.
    - `keys`: `[N]` PRNG keys (training), or `None` at inference.
    """
    if keys is None:
        return jax.vmap(lambda xi, mi: model(xi, mi, state), axis_name=BATCH_AXIS,
                        out_axes=(0, None))(x, mask)
    return jax.vmap(lambda xi, mi, ki: model(xi, mi, state, key=ki), axis_name=BATCH_AXIS,
                    out_axes=(0, None))(x, mask, keys)


def batched_represent(model, x, mask, state, keys=None):
    """As `batched_forward`, through `model.represent`: `(logits [N, C], representation [N, R], state)`."""
    if keys is None:
        return jax.vmap(lambda xi, mi: model.represent(xi, mi, state), axis_name=BATCH_AXIS,
                        out_axes=(0, 0, None))(x, mask)
    return jax.vmap(lambda xi, mi, ki: model.represent(xi, mi, state, key=ki), axis_name=BATCH_AXIS,
                    out_axes=(0, 0, None))(x, mask, keys)


def split_key(key: PRNGKeyArray | None, n: int) -> list[PRNGKeyArray | None]:
    """`n` independent keys, or `n` Nones at inference."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def linear_stack(sizes, *, key: PRNGKeyArray, hidden_bias: bool = True) -> tuple[eqx.nn.Linear, ...]:
    """Dense layers `sizes[0] → sizes[1] → … → sizes[-1]`, one key per layer; `hidden_bias=False`
    leaves the bias out of all but the last (where a normalisation that subtracts the mean follows)."""
    keys = jax.random.split(key, len(sizes) - 1)
    last = len(sizes) - 2
    return tuple(eqx.nn.Linear(a, b, use_bias=hidden_bias or i == last, key=k)
                 for i, (a, b, k) in enumerate(zip(sizes[:-1], sizes[1:], keys)))


_REGISTRY: dict[str, str] = {
    "simplenn": "pidx.models.mlp:SimpleNN",
    "dnn": "pidx.models.mlp:DNN",
    "fse_phase0": "pidx.models.fse:FSEAttention",
    "fse_phase1": "pidx.models.fse:DetectorAwareFSE",
}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def resolve_model_class(name: str) -> type:
    """A built-in model name or a `package.module:Class` import path (a `PIDModel` subclass)."""
    from ..utils import resolve_named_class

    return resolve_named_class(name, _REGISTRY, PIDModel, kind="model")


def build_model(name: str, layout: FeatureLayout, *, key: PRNGKeyArray, num_classes: int = NUM_CLASSES,
                compile: bool = False, **kwargs) -> tuple[PIDModel, eqx.nn.State]:
    """Instantiate a model by name with its initial state (BatchNorm statistics, if any).

    **Arguments:**

    - `name`: a built-in name (`model_names()`) or a `package.module:Class` path.
    - `layout`: the feature layout.
    - `key`: initialisation key.
    - `num_classes`: output size.
    - `compile`: run the initialisation as one compiled program (bitwise the same
      weights). Worth it where the persistent compilation cache is on, as in the `pidx`
      CLI: a re-run then skips the ~60 one-op compiles of an eager initialisation (~3 s
      on a 2-core CPU). In a process that builds many differently-sized models, eager is
      faster, since one-op compiles are shared between models.
    - `kwargs`: the model's parameters.
    """
    cls = resolve_model_class(name)
    try:
        if compile:
            return _initialise(cls, layout, key, num_classes, kwargs)
        return eqx.nn.make_with_state(cls)(layout, num_classes=num_classes, key=key, **kwargs)
    except TypeError as exc:
        raise ValueError(f"model '{name}': bad parameters {sorted(kwargs)}: {exc}") from None


@eqx.filter_jit
def _initialise(cls, layout, key, num_classes, kwargs):
    """The whole initialisation as one compiled program (see `build_model(compile=True)`)."""
    return eqx.nn.make_with_state(cls)(layout, num_classes=num_classes, key=key, **kwargs)


__all__ = ["is_abstract", "PIDModel", "BATCH_AXIS", "ACTIVATIONS", "typechecked", "activation", "batched_forward", "batched_represent", "split_key",
           "linear_stack", "model_names", "resolve_model_class", "build_model"]

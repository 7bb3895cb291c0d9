"""The model contract every pidx architecture follows.

A model is an `eqx.Module` called on **one track**; the Trainer vmaps it over a batch
(axis name `"batch"`, which BatchNorm uses), so it never special-cases an architecture:

```python
logits, state = model(x, mask, state, key=key)
# x: Float[Array, "feature"], mask: Bool[Array, "group"], state: eqx.nn.State
# logits: Float[Array, "class"]
```

`key` is keyword-only and `None` at inference. Training vs inference is switched the
Equinox way, with `eqx.nn.inference_mode(model)` (dropout and group dropout off,
BatchNorm on running statistics).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
from beartype import beartype
from jaxtyping import Array, Bool, Float, PRNGKeyArray, jaxtyped

from ..data.schema import NUM_CLASSES, FeatureLayout
from ..errors import RecipeError

BATCH_AXIS = "batch"

# Runtime shape/dtype checks at trace time (never per batch: they run while jit traces).
typechecked = jaxtyped(typechecker=beartype)


class PIDModel(eqx.Module):
    """Base class: holds the feature layout and checks inputs against it.

    Subclasses implement `forward(x, mask, state, *, key)` with the same contract;
    `__call__` validates shapes (with jaxtyping + beartype, at trace time) first.
    """

    layout: FeatureLayout = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)

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

    def forward(self, x, mask, state, *, key=None):
        raise NotImplementedError


def split_key(key: PRNGKeyArray | None, n: int) -> list[PRNGKeyArray | None]:
    """`n` independent keys, or `n` Nones at inference."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def activation(name: str) -> Callable:
    table = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu, "tanh": jax.nn.tanh}
    if name not in table:
        raise RecipeError(f"model.activation must be one of {sorted(table)}, got {name!r}")
    return table[name]


_REGISTRY: dict[str, str] = {
    "simplenn": "pidx.models.mlp:SimpleNN",
    "dnn": "pidx.models.mlp:DNN",
    "fse_phase0": "pidx.models.fse:FSEAttention",
    "fse_phase1": "pidx.models.fse:DetectorAwareFSE",
}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def resolve_model_class(name: str) -> type:
    """A built-in model name or a `package.module:Class` import path."""
    from ..utils import resolve_named_class

    return resolve_named_class(name, _REGISTRY, PIDModel, prefix="model.name", kind="model")


def build_model(name: str, layout: FeatureLayout, *, key: PRNGKeyArray, num_classes: int = NUM_CLASSES,
                compile: bool = False, **kwargs) -> tuple[PIDModel, eqx.nn.State]:
    """Instantiate a model by name with its initial state (BatchNorm statistics, if any).

    With `compile=True` the initialisation runs as one compiled program (bitwise the same
    weights). Worth it where the persistent compilation cache is on, as in the `pidx` CLI:
    a re-run then skips the ~60 one-op compiles of an eager initialisation (~3 s on a
    2-core CPU). In a process that builds many differently-sized models, eager is faster,
    since one-op compiles are shared between models.
    """
    cls = resolve_model_class(name)
    try:
        if compile:
            return _initialise(cls, layout, key, num_classes, kwargs)
        return eqx.nn.make_with_state(cls)(layout, num_classes=num_classes, key=key, **kwargs)
    except TypeError as exc:
        raise RecipeError(f"model '{name}': bad parameters {sorted(kwargs)}: {exc}") from None


@eqx.filter_jit
def _initialise(cls, layout, key, num_classes, kwargs):
    """The whole initialisation as one compiled program (see `build_model(compile=True)`)."""
    return eqx.nn.make_with_state(cls)(layout, num_classes=num_classes, key=key, **kwargs)


__all__ = ["PIDModel", "BATCH_AXIS", "typechecked", "split_key", "activation", "model_names",
           "resolve_model_class", "build_model"]

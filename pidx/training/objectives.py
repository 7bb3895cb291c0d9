"""Training objectives: what one train step minimises.

An objective is an `eqx.Module` the jitted train step calls on every batch:

```python
loss, logs = objective(params, forward, batch, key=key)
```

- `params`: the objective's own trainable weights (what `objective.init(model, state, key=...)` returned;
  `None` for most). The Trainer trains them with the model's optimizer and checkpoints them beside the
  model; they are never part of the exported or predicted model.
- `forward(tracks)`: runs the model on a `Tracks` (dropout, BatchNorm statistics and mixed precision
  as in any step) and returns `Output(logits, representation)`; the representation is the input of
  the classifier head (`PIDModel.represent`), computed only when asked for (`representation=True`).
- `batch`: a `Batch`: the labelled `source` tracks with their per-track `weight`, the unlabelled
  `target` tracks (`None` unless the fit has a target sample), the class weights and the training
  `progress` in [0, 1].
- `logs`: named scalars; the Trainer logs each epoch's mean as `train/<name>` (declare the names in
  `log_names`).

Validation, early stopping and the posteriors always use the objective's classification `loss`
(`objective.loss(logits, labels, class_weights)`), whatever the objective adds in training.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..models.base import batched_forward, batched_represent
from .losses import CrossEntropy, FocalLoss


class Tracks(NamedTuple):
    """One stream's batch: features `[N, F]`, group mask `[N, G]`, labels `[N]` (-1: none) and
    per-track weights `[N]`."""

    x: Any
    mask: Any
    label: Any
    weight: Any


class Batch(NamedTuple):
    """What an objective sees of one step: `source` (labelled), `target` (unlabelled, or `None`),
    `class_weights` `[C]` and `progress` (steps done / steps planned, in [0, 1])."""

    source: Tracks
    target: Tracks | None
    class_weights: Any
    progress: Any


class Output(NamedTuple):
    logits: Any
    representation: Any


class Forward:
    """The model as an objective calls it inside one step: threads the model state (BatchNorm) from
    call to call and gives each call its own dropout keys (the first call the step's own, so a
    classification objective trains exactly as the step always did). The first call's logits are
    what the step counts as the batch's correct predictions (`first_logits`)."""

    def __init__(self, model, state, step_key, compute_dtype=None, *, track_keys=None):
        self.model, self.state, self.step_key, self.compute_dtype = model, state, step_key, compute_dtype
        self.track_keys = track_keys  # the first call's per-track keys, when the step computes a block of its batch
        self.calls, self.first_logits = 0, None

    def __call__(self, tracks: Tracks, *, representation: bool = False) -> Output:
        key = self.step_key if self.calls == 0 else jax.random.fold_in(self.step_key, self.calls)
        if self.calls == 0 and self.track_keys is not None:
            keys = self.track_keys
        else:
            keys = jax.random.split(key, tracks.x.shape[0])
        self.calls += 1
        x = tracks.x if self.compute_dtype is None else tracks.x.astype(self.compute_dtype)
        if representation:
            logits, rep, self.state = batched_represent(self.model, x, tracks.mask, self.state, keys)
            out = Output(logits.astype(jnp.float32), rep.astype(jnp.float32))
        else:
            logits, self.state = batched_forward(self.model, x, tracks.mask, self.state, keys)
            out = Output(logits.astype(jnp.float32), None)
        if self.first_logits is None:
            self.first_logits = out.logits
        return out


class Objective(eqx.Module):
    """Abstract: a training objective (see the module's docstring). A subclass is a frozen Equinox
    module; its configuration goes in static fields.

    - `loss`: the classification loss validation and the posteriors use.
    - `needs_target`: whether it trains on an unlabelled target sample as well.
    - `log_names`: the names of the `logs` it returns.
    """

    loss: eqx.AbstractVar[Any]
    needs_target: ClassVar[bool] = False
    log_names: ClassVar[tuple[str, ...]] = ()

    @property
    def separable(self) -> bool:
        """Whether the loss is the mean over the source tracks of one term per track, with no target
        sample and no weights of its own: then a train step may compute it over equal blocks of the
        batch and average (`pidx.training.step.step_blocks`). False unless an objective says so."""
        return False

    def init(self, model, state, *, key):
        """The objective's own trainable weights for `model` (a pytree of arrays), or `None`."""
        return None

    @abc.abstractmethod
    def __call__(self, params, forward: Forward, batch: Batch, *, key) -> tuple[Any, dict[str, Any]]:
        """`(loss, logs)` of one batch."""


class Classification(Objective):
    """The classification loss on the labelled tracks, weighted per track and per class.

    **Arguments:**

    - `loss`: `CrossEntropy()` or `FocalLoss(...)` (default cross-entropy).
    """

    loss: Any = eqx.field(static=True)

    def __init__(self, loss=None):
        self.loss = CrossEntropy() if loss is None else loss

    @property
    def separable(self) -> bool:
        return type(self.loss) in (CrossEntropy, FocalLoss)  # a loss of one's own may not be a per-track mean

    def __call__(self, params, forward, batch, *, key):
        out = forward(batch.source)
        return self.loss(out.logits, batch.source.label, batch.class_weights, batch.source.weight), {}


def as_objective(loss_or_objective) -> Objective:
    """An `Objective` as given, or a loss (`CrossEntropy`, `FocalLoss`) wrapped in `Classification`."""
    if isinstance(loss_or_objective, Objective):
        return loss_or_objective
    if loss_or_objective is None:
        return Classification(FocalLoss())
    if callable(loss_or_objective):
        return Classification(loss_or_objective)
    raise TypeError(f"expected a pidx Objective or a loss, got {loss_or_objective!r}")


def init_objective(objective: Objective, params, static, model_state, optimizer, seeds, *, ensemble: bool):
    """`(arrays, static, optimizer state)` of the objective's own weights for the model `(params, static)`,
    each from `fold_in(PRNGKey(seed), 4)` (one set per ensemble member, vmapped over `seeds`), or three
    `None`s when the objective has none."""
    if ensemble:
        first = eqx.combine(jax.tree.map(lambda a: a[0], params), static).members
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), 4))(jnp.asarray(seeds, jnp.uint32))
        weights = eqx.filter_vmap(lambda k: objective.init(first, model_state, key=k))(keys)
    else:
        weights = objective.init(eqx.combine(params, static), model_state,
                                 key=jax.random.fold_in(jax.random.PRNGKey(seeds), 4))
    if weights is None:
        return None, None, None
    arrays, rest = eqx.partition(weights, eqx.is_inexact_array)
    return arrays, rest, (jax.vmap(optimizer.init) if ensemble else optimizer.init)(arrays)


def representation_size(model, state) -> int:
    """The length of `model.represent`'s representation of one track (traced, nothing computed)."""
    layout = model.layout
    x = jax.ShapeDtypeStruct((2, layout.num_features), jnp.float32)
    mask = jax.ShapeDtypeStruct((2, layout.num_groups), jnp.bool_)
    out = eqx.filter_eval_shape(lambda m, xi, mi: batched_represent(eqx.nn.inference_mode(m), xi, mi, state),
                                model, x, mask)
    return int(out[1].shape[-1])


__all__ = ["Tracks", "Batch", "Output", "Forward", "Objective", "Classification", "as_objective", "init_objective",
           "representation_size"]

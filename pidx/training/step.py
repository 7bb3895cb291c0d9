"""Pure jitted functions of the training loop: optimizer, train chunk, evaluation.

The hot loop never leaves the device: the epoch's permutation is drawn on device,
batches are gathered from device-resident arrays inside one `lax.scan` over a chunk
of steps, and the carried (params, optimizer state, model state) buffers are donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..models.base import batched_forward
from .objectives import Batch, Forward, Tracks
from .parallel import DataParallel

OPTIMIZERS = ("adam", "adamw", "sgd")


class AverageState(NamedTuple):
    """`track_average`'s state: how many updates it has seen and the averaged weights."""

    count: Any
    average: Any


def track_average(decay: float) -> optax.GradientTransformation:
    """An optax transformation that keeps an exponential moving average of the weights after each update.

    It passes the updates through unchanged, so chained last it leaves training as it was; the average
    lives in the optimizer state (`average_of` reads it), so it is updated inside the jitted step,
    vmapped over ensemble members, replicated over devices and checkpointed with everything else.
    The effective decay of update `t` is `min(decay, (1 + t) / (10 + t))`, as in TensorFlow's
    `ExponentialMovingAverage`: the first updates do not drag the initial weights along.

    **Arguments:**

    - `decay`: in (0, 1); the average spans about `1 / (1 - decay)` steps.
    """
    check_decay(decay)

    def init(params):
        return AverageState(count=jnp.zeros([], jnp.int32), average=jax.tree.map(jnp.copy, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("track_average needs the weights: call update(updates, state, params)")
        new_params = optax.apply_updates(params, updates)
        count = state.count + 1
        rate = jnp.minimum(decay, count / (9.0 + count))  # (1 + t) / (10 + t) with t = count - 1
        average = jax.tree.map(lambda a, p: rate * a + (1.0 - rate) * p, state.average, new_params)
        return updates, AverageState(count=count, average=average)

    return optax.GradientTransformation(init, update)


def check_decay(decay) -> None:
    """A weight-average decay is a number in (0, 1); anything else raises `ValueError`."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
        raise ValueError(f"the weight-average decay must be a number in (0, 1), got {decay!r}")


def average_of(opt_state):
    """The averaged weights `track_average` keeps in `opt_state` (`None` when it keeps none)."""
    return optax.tree_utils.tree_get(opt_state, "average")


SCHEDULES = ("constant", "cosine", "warmup_cosine")


def make_schedule(name: str, peak: float, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: int = 0):
    """The learning rate over training: `peak` (constant), an optax cosine decay to 0 over `max_epochs`,
    or a linear warm-up over `warmup_epochs` then that cosine decay."""
    if name not in SCHEDULES:
        raise ValueError(f"the learning-rate schedule must be one of {list(SCHEDULES)}, got {name!r}")
    if name == "constant":
        return peak
    total = max_epochs * steps_per_epoch
    if name == "cosine":
        return optax.cosine_decay_schedule(peak, total)
    warmup = warmup_epochs * steps_per_epoch
    return optax.warmup_cosine_decay_schedule(0.0 if warmup else peak, peak, max(warmup, 1), total)


def make_optimizer(name: str = "adam", learning_rate: float | Callable = 1e-3, *, weight_decay: float = 0.0,
                   grad_clip_norm: float | None = None, momentum: float = 0.9,
                   average_decay: float | None = None) -> optax.GradientTransformation:
    """An optax optimizer whose learning rate is a live hyperparameter.

    The learning rate sits in the optimizer state (`optax.inject_hyperparams`), so a
    callback can change it between epochs (`trainer.learning_rate = ...`) without a
    recompile; it may also be an optax schedule. With `average_decay`, `track_average`
    is chained last (what the `WeightAveraging` callback reads).
    """
    if average_decay is not None:
        check_decay(average_decay)  # here, not at the first step
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {list(OPTIMIZERS)}, got {name!r}")

    def build(learning_rate):
        parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm else []
        if name == "adam":
            parts.append(optax.adam(learning_rate))
        elif name == "adamw":
            parts.append(optax.adamw(learning_rate, weight_decay=weight_decay))
        else:
            parts.append(optax.sgd(learning_rate, momentum=momentum))
        if average_decay is not None:
            parts.append(track_average(average_decay))
        return optax.chain(*parts)

    return optax.inject_hyperparams(build)(learning_rate=learning_rate)


class TrainState(NamedTuple):
    """Everything training changes, carried from step to step by the train chunk (and donated):

    - `params`, `opt_state`, `model_state`: the model's weights, their optimizer state and the
      model's state (BatchNorm statistics);
    - `objective_params`, `objective_opt_state`: the objective's own weights and their optimizer state
      (`None` for an objective without weights);
    - `step`: `u32` steps taken (`[K]` for an ensemble, all equal);
    - `key`: the run's root key (`[K]` keys, one per member's seed); step `s` draws its dropout keys
      from `fold_in(fold_in(key, 2), s)`, its target rows from `fold_in(fold_in(key, 3), s)` and
      epoch `e` its shuffle from `fold_in(fold_in(key, 1), e)`, so a resumed fit draws what an
      uninterrupted one does.
    """

    params: Any
    opt_state: Any
    model_state: Any
    objective_params: Any
    objective_opt_state: Any
    step: Any
    key: Any


class StepInputs(NamedTuple):
    """What every step of a train chunk reads besides the state and the rows: `class_weights` `[C]`,
    the resident unlabelled `target` sample `(features, mask)` (or `None`) and `total_steps` (for the
    objective's `progress`)."""

    class_weights: Any
    target: Any
    total_steps: Any


PERMUTATION_STREAM, DROPOUT_STREAM, TARGET_STREAM = 1, 2, 3  # fold_in(state.key, ·): independent streams


def make_train_chunk(static, objective, optimizer: optax.GradientTransformation, compute_dtype=None,
                     ensemble: bool = False, parallel: DataParallel | None = None, objective_static=None,
                     block_size: int | None = None):
    """Build `train_chunk(state, idx, data, inputs) -> (state, (loss, correct, logs))`: `steps` steps.

    - `state`: a `TrainState`, donated; it comes back `steps` steps on (the objective's entries are
      `None` when it has no weights of its own).
    - `idx`: `i32[steps, batch]` rows of the device-resident `data = (x, mask, label, weight)`.
    - `inputs`: a `StepInputs`; with a `target`, each step draws `batch` of its rows (with replacement,
      from the state's target stream folded with the step number, so a resumed fit draws the same).
    - `objective`: a `pidx.training.objectives.Objective` (see there); `objective_static` the
      non-array part of its own weights (`eqx.partition`), which the carry holds the arrays of.
    - returns the new carry and per-step `loss`, number of correct predictions and the objective's logs.

    With `ensemble=True` (`static` is an `Ensemble`), the whole chunk is vmapped over the
    member axis of the state and `idx` (`[K, steps, batch]`): each member
    runs exactly the steps a single run with its seed would, in one program.

    With `parallel` (a `DataParallel`), each step's batch is sharded over its mesh and the
    carry comes back replicated: XLA inserts the gradient all-reduce.

    With `block_size`, a step computes its batch `block_size` rows at a time where `step_blocks`
    allows it: the loss and gradient of each block in a `lax.scan`, averaged (the batch's own, up to
    float rounding, with each track's dropout key as drawn for the whole batch). On a CPU a block's
    activations stay in cache where a whole batch's do not (`PIDModel.train_block`).
    """

    def step(state, idx, data, inputs):
        params, opt_state, model_state, obj_params, obj_opt_state, step_no, root = state
        x_all, m_all, y_all, w_all = data
        x, m, y, w = x_all[idx], m_all[idx], y_all[idx], w_all[idx]
        target = None
        if inputs.target is not None:
            xt_all, mt_all = inputs.target
            target_root = jax.random.fold_in(root, TARGET_STREAM)
            rows = jax.random.randint(jax.random.fold_in(target_root, step_no), idx.shape, 0, xt_all.shape[0])
            target = (xt_all[rows], mt_all[rows])
        if parallel is not None:  # the batch axis split over the devices
            x, m, y, w = (jax.lax.with_sharding_constraint(a, parallel.rows(a.ndim, 0)) for a in (x, m, y, w))
            if target is not None:
                target = tuple(jax.lax.with_sharding_constraint(a, parallel.rows(a.ndim, 0)) for a in target)
        step_key = jax.random.fold_in(jax.random.fold_in(root, DROPOUT_STREAM), step_no)
        progress = jnp.minimum(step_no.astype(jnp.float32) / jnp.maximum(inputs.total_steps, 1.0), 1.0)
        target_tracks = None if target is None else Tracks(*target, jnp.full(idx.shape, -1, jnp.int32),
                                                           jnp.ones(idx.shape, jnp.float32))

        def loss_of(trainable, tracks, track_keys):
            p, op = trainable
            model = eqx.combine(p, static)
            if ensemble:  # inside the member vmap: one member's weights
                model = model.members
            if compute_dtype is not None:  # mixed precision: low-precision compute, f32 master weights
                model = jax.tree.map(lambda a: a.astype(compute_dtype) if eqx.is_inexact_array(a) else a, model)
            forward = Forward(model, model_state, step_key, compute_dtype, track_keys=track_keys)
            if op is not None:
                op = eqx.combine(op, objective_static)
            batch = Batch(tracks, target_tracks, inputs.class_weights, progress)
            loss, logs = objective(op, forward, batch, key=jax.random.fold_in(step_key, 0x0B1E))
            if forward.first_logits is None:
                raise TypeError(f"{type(objective).__name__} never called the model (forward)")
            return loss, (forward.state, jnp.sum(jnp.argmax(forward.first_logits, -1) == tracks.label), logs)

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)
        blocks = step_blocks(idx.shape[-1], block_size, objective, has_target=target is not None,
                             parallel=parallel)
        if blocks == 1:
            (loss, (new_state, correct, logs)), (grads, obj_grads) = grad_fn((params, obj_params), Tracks(x, m, y, w),
                                                                             None)
        else:  # the mean loss of equal blocks is the batch's, its gradient the blocks' mean gradient
            keys = jax.random.split(step_key, idx.shape[-1])  # each track's dropout key, as unblocked

            def one_block(total, block):
                (loss, (_, correct, logs)), grads = grad_fn((params, obj_params), Tracks(*block[:4]), block[4])
                return jax.tree.map(jnp.add, total, grads), (loss, correct, logs)

            zeros = jax.tree.map(jnp.zeros_like, (params, obj_params))
            rows = (x, m, y, w, keys)
            grads, (loss, correct, logs) = jax.lax.scan(
                one_block, zeros, jax.tree.map(lambda a: a.reshape(blocks, -1, *a.shape[1:]), rows))
            grads, obj_grads = jax.tree.map(lambda g: g / blocks, grads)
            loss, correct, logs = loss.mean(), correct.sum(), jax.tree.map(jnp.mean, logs)
            new_state = model_state  # a model that allows blocks keeps no batch statistics
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if obj_params is not None:
            obj_updates, obj_opt_state = optimizer.update(obj_grads, obj_opt_state, obj_params)
            obj_params = optax.apply_updates(obj_params, obj_updates)
        return (TrainState(params, opt_state, new_state, obj_params, obj_opt_state, step_no + 1, root),
                (loss, correct, logs))

    def train_chunk(state, idx, data, inputs):
        return jax.lax.scan(lambda s, i: step(s, i, data, inputs), state, idx)

    if ensemble:
        train_chunk = jax.vmap(train_chunk, in_axes=(0, 0, None, None))
    return jax.jit(train_chunk, donate_argnums=(0,), **_replicated_outputs(parallel))


def step_blocks(rows: int, block_size: int | None, objective, *, has_target: bool = False,
                parallel: DataParallel | None = None) -> int:
    """Into how many equal blocks a train step may split a batch of `rows`: 1 (the whole batch at once)
    without a `block_size`, for an objective that is not a per-track mean (`Objective.separable`),
    with a target sample or data parallelism, or when `rows` is at most one block; otherwise
    `rows // b` for the largest `b` in [block_size / 2, block_size] that divides `rows` (1 if none does)."""
    if block_size is None or rows <= block_size or has_target or parallel is not None or not objective.separable:
        return 1
    for size in range(block_size, block_size // 2 - 1, -1):
        if rows % size == 0:
            return rows // size
    return 1


def _replicated_outputs(parallel: DataParallel | None) -> dict:
    return {} if parallel is None else {"out_shardings": parallel.replicated}


def make_permutation(n_rows: int, n_steps: int, batch_size: int, *, members: bool = False, sharding=None):
    """`perm(key) -> i32[n_steps, batch]`: a fresh shuffle of the train rows per epoch; with
    `members=True`, one per ensemble member's key (`[K, n_steps, batch]`). Placed with `sharding`
    when given (the batch axis split over devices)."""

    def perm(key):
        return jax.random.permutation(key, n_rows)[: n_steps * batch_size].reshape(n_steps, batch_size)

    return jax.jit(jax.vmap(perm) if members else perm, **({} if sharding is None else {"out_shardings": sharding}))


def model_class(static, *, ensemble: bool = False) -> type:
    """The model class a partitioned model's `static` part holds (an ensemble's members' class)."""
    return type(static.members if ensemble else static)


def auto_train_block(static, *, ensemble: bool = False) -> int | None:
    """`step_block="auto"`: the model's `train_block` on a CPU, `None` (whole batches) elsewhere."""
    if jax.default_backend() != "cpu":
        return None
    return getattr(model_class(static, ensemble=ensemble), "train_block", None)


def eval_block(train_block: int | None) -> int | None:
    """Rows per model call of an evaluation pass: twice the train step's `train_block` (a forward pass
    keeps no activations for a backward one, so twice the rows stay in cache); `None` (whole batches)
    when the train step takes whole batches."""
    return None if train_block is None else 2 * train_block


def make_evaluate(static, loss_fn, eval_batch_size: int, *, ensemble: bool = False, members: bool = False,
                  parallel: DataParallel | None = None, block_size: int | None = None):
    """Build `evaluate(params, model_state, x, mask, label, class_weights) -> (probs, loss)`.

    One jitted pass: rows are padded to whole batches of `eval_batch_size` (or of `block_size`
    when smaller, e.g. `eval_block`: the same outputs, faster where a batch outgrows the cache) and
    mapped with `lax.map`.
    Labels < 0 (unlabelled) are ignored by the loss; `loss_fn=None` (prediction only)
    gives a NaN loss. For an ensemble, `probs` is the
    members' mean (and the loss is that of the mean), or with `members=True` the
    members' probabilities `[K, N, C]` (loss NaN). With `parallel`, each batch is split over
    its devices and the outputs come back replicated.
    """

    def evaluate(params, model_state, x, mask, label, class_weights):
        if not ensemble:
            return single(params, model_state, x, mask, label, class_weights)
        probs = jax.vmap(lambda p, s: single(p, s, x, mask, label, class_weights, member=True)[0])(
            params, model_state)
        if members:
            return probs, jnp.nan
        mean = probs.mean(0)
        if loss_fn is None:
            return mean, jnp.nan
        return mean, _masked_loss(loss_fn, jnp.log(jnp.maximum(mean, 1e-30)), label, class_weights)

    def single(params, model_state, x, mask, label, class_weights, member=False):
        model = eqx.combine(params, static)
        model = eqx.nn.inference_mode(model.members if member else model)
        n = x.shape[0]
        batch = min(eval_batch_size, n, block_size or n)
        if parallel is not None:  # whole rows per device
            batch = -(-batch // parallel.size) * parallel.size
        pad = (-n) % batch
        xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, batch, x.shape[1])
        mp = jnp.pad(mask, ((0, pad), (0, 0)), constant_values=True).reshape(-1, batch, mask.shape[1])
        if parallel is not None:
            xp, mp = (jax.lax.with_sharding_constraint(a, parallel.rows(3, 1)) for a in (xp, mp))
        logits = jax.lax.map(lambda b: batched_forward(model, b[0], b[1], model_state)[0], (xp, mp))
        logits = logits.reshape(-1, logits.shape[-1])[:n].astype(jnp.float32)
        if member or loss_fn is None:
            return jax.nn.softmax(logits, axis=-1), None if member else jnp.nan
        return jax.nn.softmax(logits, axis=-1), _masked_loss(loss_fn, logits, label, class_weights)

    return jax.jit(evaluate, **_replicated_outputs(parallel))


def _masked_loss(loss_fn, logits, label, class_weights):
    """Mean loss over labelled rows (NaN if none is labelled)."""
    labelled = label >= 0
    per_row = jax.vmap(lambda lg, y: loss_fn(lg[None], y[None], class_weights))(logits, jnp.maximum(label, 0))
    n = labelled.sum()
    return jnp.where(n > 0, jnp.sum(jnp.where(labelled, per_row, 0.0)) / jnp.maximum(n, 1), jnp.nan)


__all__ = ["OPTIMIZERS", "SCHEDULES", "make_schedule", "AverageState", "track_average", "check_decay", "average_of", "make_optimizer",
           "TrainState", "StepInputs", "PERMUTATION_STREAM", "DROPOUT_STREAM", "TARGET_STREAM", "make_train_chunk",
           "step_blocks", "make_permutation", "model_class", "auto_train_block", "eval_block",
           "make_evaluate"]

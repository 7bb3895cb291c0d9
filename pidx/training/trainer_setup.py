"""The parts of `Trainer` that set up what training carries: its one `TrainState` (and a view of each
of its parts), the optimizer with its learning-rate schedule (built once the epoch's step count is
known) and the objective's own weights.

Split from trainer.py to keep each file to one job; `Trainer` inherits these methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import TrainingError
from .feed import steps_per_epoch
from .objectives import init_objective
from .step import TrainState, auto_train_block, make_optimizer, make_schedule, model_class

EMPTY_STATE = TrainState(*(None,) * len(TrainState._fields))


def _state_part(name: str) -> property:
    """`trainer.<name>`: that part of `trainer.state`; setting it replaces that part only."""

    def get(self):
        return getattr(self.state, name)

    def put(self, value):
        self.state = self.state._replace(**{name: value})

    return property(get, put, doc=f"`trainer.state.{name}` (settable).")


class SetupMixin:
    """`state` and its parts, `learning_rate` (live, settable between epochs), the scheduled optimizer and
    the objective's weights."""

    state: TrainState = EMPTY_STATE  # everything training changes; the pure train chunk takes and returns it
    params = _state_part("params")
    opt_state = _state_part("opt_state")
    model_state = _state_part("model_state")
    objective_params = _state_part("objective_params")
    objective_opt_state = _state_part("objective_opt_state")

    @property
    def learning_rate(self) -> float:
        return float(jnp.ravel(self.opt_state.hyperparams["learning_rate"])[0])  # one per member: all equal

    @learning_rate.setter
    def learning_rate(self, value: float):
        for opt_state in (self.opt_state, self.objective_opt_state):  # the objective's weights follow the model's
            if opt_state is not None:
                old = opt_state.hyperparams["learning_rate"]
                opt_state.hyperparams["learning_rate"] = jnp.full(jnp.shape(old), value, jnp.float32)

    def _build_optimizer(self, steps: int | None):
        """The optimizer by name, its learning rate scheduled over `steps` per epoch (constant if `None`)."""
        args = dict(self._optimizer_args)
        name, peak = args.pop("name"), args.pop("learning_rate")
        lr = peak if steps is None else make_schedule(self.lr_schedule, peak, steps_per_epoch=steps,
                                                      max_epochs=self.max_epochs, warmup_epochs=self.warmup_epochs)
        return make_optimizer(name, lr, **args)

    def _schedule_learning_rate(self, train) -> None:
        """Build the scheduled optimizer now the epoch's step count is known (nothing has trained yet)."""
        if self.lr_schedule == "constant":
            return
        self.optimizer = self._build_optimizer(steps_per_epoch(train, self.batch_size))
        self.opt_state = (jax.vmap(self.optimizer.init) if self.is_ensemble else self.optimizer.init)(self.params)

    def _place_step_and_key(self) -> None:
        """The state's step (the host's `global_step`, after a resume the checkpoint's) and its root key
        (the seed's, or each ensemble member's)."""
        if self.is_ensemble:
            seeds = jnp.asarray(self.static.seeds, jnp.uint32)
            key, step = jax.vmap(jax.random.PRNGKey)(seeds), jnp.full(seeds.shape, self.global_step, jnp.uint32)
        else:
            key, step = jax.random.PRNGKey(self.seed), jnp.uint32(self.global_step)
        self.state = self.state._replace(step=step, key=key)

    def _init_objective(self) -> None:
        """The objective's own weights (one set per ensemble member) and their optimizer state."""
        (self.objective_params, self.objective_static, self.objective_opt_state) = init_objective(
            self.objective, self.params, self.static, self.model_state, self.optimizer,
            self.static.seeds if self.is_ensemble else self.seed, ensemble=self.is_ensemble)


    def _train_block(self) -> int | None:
        """Rows per block of a train step (`step_block`): `"auto"` gives the model's `train_block` on a
        CPU and whole batches elsewhere; a number needs a model that allows blocks."""
        if self.step_block == "auto":
            return auto_train_block(self.static, ensemble=self.is_ensemble)
        cls = model_class(self.static, ensemble=self.is_ensemble)
        if self.step_block is not None and getattr(cls, "train_block", None) is None:
            raise TrainingError(f"{cls.__name__} computes each batch whole (its train_block is None: "
                                f"its tracks see each other, e.g. through BatchNorm); step_block must be "
                                f"'auto' or None, got {self.step_block}")
        return self.step_block


def check_step_block(value):
    """`value` if it is a valid `Trainer(step_block=...)`: `"auto"`, `None` or a whole number >= 1."""
    if value == "auto" or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrainingError(f"step_block must be 'auto', None or a number of rows >= 1, got {value!r}")
    return value


__all__ = ["SetupMixin", "EMPTY_STATE", "check_step_block"]

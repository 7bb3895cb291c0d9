"""The parts of `Trainer` that set up what training carries: the optimizer with its learning-rate
schedule (built once the epoch's step count is known) and the objective's own weights.

Split from trainer.py to keep each file to one job; `Trainer` inherits these methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .feed import steps_per_epoch
from .objectives import init_objective
from .step import make_optimizer, make_schedule


class SetupMixin:
    """`learning_rate` (live, settable between epochs), the scheduled optimizer and the objective's weights."""

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

    def _init_objective(self) -> None:
        """The objective's own weights (one set per ensemble member) and their optimizer state."""
        (self.objective_params, self.objective_static, self.objective_opt_state) = init_objective(
            self.objective, self.params, self.static, self.model_state, self.optimizer,
            self.static.seeds if self.is_ensemble else self.seed, ensemble=self.is_ensemble)



__all__ = ["SetupMixin"]

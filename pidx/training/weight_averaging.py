"""`WeightAveraging`: validate, select checkpoints and finish with a moving average of the weights.

Lightning's callback of that name keeps an averaged copy of the model beside the one being trained,
puts it in place for validation and copies it into the model when training ends. pidx does the same,
but the average itself is kept by the optimizer (`track_average`, chained last when the Trainer builds
the optimizer by name), so it is updated inside the jitted scan of steps, per ensemble member and over
devices, and is saved and restored with the optimizer state: a resumed fit ends with the same weights.

What the callback does is put that average in place of the training weights at the right moments:

- at each validation (at the end of an epoch, and `val_check_interval`'s checks inside one), so the
  validation metrics, `EarlyStopping` (and its best weights) and `ModelCheckpoint` (and its best
  checkpoint) all see the averaged model;
- when training ends, so the fitted model, `test` and `predict` use it;
- and it puts the training weights back at the start of the next epoch. A checkpoint written while
  the average is in place also holds the training weights, so resuming from it continues training
  from them exactly.

BatchNorm's running statistics (the model state) are not averaged: they are running averages already.
"""

from __future__ import annotations

from ..errors import TrainingError
from .callbacks import Callback
from .step import average_of, check_decay


class WeightAveraging(Callback):
    """An exponential moving average of the weights for validation, checkpoints and the fitted model.

    **Arguments:**

    - `decay`: in (0, 1); the average spans about `1 / (1 - decay)` optimizer steps (0.999: a
      thousand steps, under two epochs of the high-range recipes' 579 steps). The Trainer passes it to
      `make_optimizer`; with a ready optax transformation as the optimizer, chain
      `pidx.training.step.track_average(decay)` into it instead.
    """

    def __init__(self, decay: float = 0.999):
        try:
            check_decay(decay)
        except ValueError as exc:
            raise TrainingError(f"WeightAveraging: {exc}") from None
        self.decay = float(decay)
        self._trainer = None
        self._training_weights = None  # the weights being trained while the average is in place
        self._average = None  # the averaged tree put in place; its identity says whether it still is

    def setup(self, trainer, stage):
        if stage == "fit":
            self._trainer, self._training_weights, self._average = trainer, None, None

    def on_fit_start(self, trainer):
        if average_of(trainer.opt_state) is None:
            raise TrainingError("WeightAveraging: the optimizer keeps no average of the weights; give the Trainer "
                                "the optimizer by name, or chain pidx.training.step.track_average(decay) into yours")

    def on_validation_start(self, trainer):
        self._put_average_in_place(trainer)

    def on_train_end(self, trainer):
        self._put_average_in_place(trainer)

    def on_train_epoch_start(self, trainer):
        if self._in_place(trainer):
            trainer.params = self._training_weights
        self._training_weights = self._average = None

    def _in_place(self, trainer) -> bool:
        return self._average is not None and trainer.params is self._average

    def _put_average_in_place(self, trainer) -> None:
        if self._in_place(trainer):
            return
        # Inside an epoch the loop trains on from its own carry and puts those weights back after the
        # next chunk of steps, so nothing needs undoing there.
        self._training_weights = trainer.params
        self._average = trainer.params = average_of(trainer.opt_state)

    def state_dict(self) -> dict:
        trainer = self._trainer
        if trainer is not None and self._in_place(trainer):
            return {"weights": (self._training_weights, trainer.model_state)}
        return {}

    def load_state_dict(self, state: dict) -> None:
        if "weights" in state and self._trainer is not None:  # the checkpoint's model is the average
            self._training_weights = state["weights"][0]
            self._average = self._trainer.params


__all__ = ["WeightAveraging"]

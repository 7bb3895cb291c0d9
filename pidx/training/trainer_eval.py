"""The parts of `Trainer` that evaluate: validate, test, predict and the jitted evaluation pass.

Split from trainer.py to keep each file to one job; `Trainer` inherits these methods.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..data.stream_cache import ChunkedTracks
from ..errors import TrainingError
from .feed import evaluate_chunks
from .metrics import classification_metrics
from .posterior import corrected_nll
from .step import eval_block, make_evaluate


class EvaluationMixin:
    """`validate`, `test`, `predict`, `predict_members` on the current (or given) model, and the validation
    pass of `fit` (at an epoch's end and every `val_check_interval` steps)."""

    def _validate(self, val) -> None:
        """The validation pass and its hooks; `logged_metrics` gains val/loss, val/accuracy and val/nll."""
        self._call_hook("on_validation_start")
        probs, vloss = self._evaluate_arrays(val)  # on the device in memory, chunk by chunk when streamed
        labels = np.asarray(val.label)
        self.validation_outputs = (np.asarray(probs), labels)
        self.logged_metrics["val/loss"] = float(vloss)
        self.logged_metrics["val/accuracy"] = float(np.mean(self.validation_outputs[0].argmax(1) == labels))
        self.logged_metrics["val/nll"] = corrected_nll(self.validation_outputs[0], labels, self.class_weights)
        self._call_hook("on_validation_end")

    def _validate_inside_epoch(self, val, losses) -> None:
        """A `val_check_interval` check: validation hooks as at an epoch's end, a `step_validations` row."""
        self.logged_metrics = {"epoch": self.current_epoch, "step": self.global_step, "epoch_step": self.epoch_step,
                               "train/loss": float(jnp.mean(jnp.concatenate(losses))), "lr": self.learning_rate}
        self.validating_inside_epoch = True
        try:
            self._validate(val)
        finally:
            self.validating_inside_epoch = False
        self.step_validations.append(dict(self.logged_metrics))

    def _evaluator(self, members: bool = False):
        """The jitted evaluation pass for the current model structure, built once and reused
        (a fresh jit per call would recompile every test/predict pass). `members=True`: the
        ensemble members' probabilities instead of their mean."""
        key = (self.static, self.loss, self.eval_batch_size, self.parallel, self.step_block)
        if self._evaluator_key != key:
            self._evaluator_key, self._evaluators = key, {}
        if members not in self._evaluators:
            block = eval_block(None if self.parallel else self._train_block())
            self._evaluators[members] = make_evaluate(self.static, self.loss, self.eval_batch_size,
                                                      ensemble=self.is_ensemble, members=members,
                                                      parallel=self.parallel, block_size=block)
        return self._evaluators[members]

    def _placed(self, arrays):
        """`arrays` on the fit's devices: as they are on one device, replicated over the mesh
        otherwise (kept for the last split placed, so test and predict place it once)."""
        if self.parallel is None:
            return arrays
        cached = self._placed_arrays
        if cached is None or cached[0] is not arrays or cached[1] is not self.parallel:
            self._placed_arrays = (arrays, self.parallel, self.parallel.replicate(arrays))
        return self._placed_arrays[2]

    def _evaluate_arrays(self, arrays, members: bool = False):
        """`(probs, loss)` of a split: `TrackArrays` in one pass, a streamed `ChunkedTracks` chunk by chunk."""
        evaluate = self._evaluator(members)
        weights = jnp.ones(self.static.num_classes) if self.class_weights is None else self.class_weights
        inputs = (self.params, self.model_state, weights)
        if self.parallel is not None:  # a no-op for what the fit already placed
            inputs = self.parallel.replicate(inputs)
        params, model_state, weights = inputs
        if isinstance(arrays, ChunkedTracks):
            place = self.parallel.replicate if self.parallel is not None else lambda a: a
            return evaluate_chunks(lambda chunk: evaluate(params, model_state, *place(chunk[:3]), weights), arrays)
        placed = self._placed(arrays)
        return evaluate(params, model_state, placed.features, placed.group_mask, placed.label, weights)

    def _set_model(self, model, state) -> None:
        """Use `model` (and `state`) if given; fail if there is no model at all."""
        if model is not None:
            self.model = model
            self.model_state = state if state is not None else eqx.nn.State(model)
        if self.params is None:
            raise TrainingError("no model: pass model= or call fit() first")

    def _use(self, model, state, datamodule):
        self._set_model(model, state)
        if datamodule is not None:
            self.datamodule = datamodule
        if self.datamodule is None:
            raise TrainingError("no data: pass datamodule=")
        self.datamodule.setup()

    def validate(self, model=None, datamodule=None, *, state=None) -> dict:
        """Metrics of the current (or given) model on the validation split."""
        self._use(model, state, datamodule)
        return self._split_metrics(self.datamodule.val)

    def test(self, model=None, datamodule=None, *, state=None) -> dict:
        """Metrics on the test split (never seen by early stopping or checkpointing)."""
        self._use(model, state, datamodule)
        self._call_hook("setup", "test")
        self._call_hook("on_test_start")
        self.test_metrics = self._split_metrics(self.datamodule.test)
        self._call_hook("on_test_end")
        self._call_hook("teardown", "test")
        return self.test_metrics

    def _split_metrics(self, arrays) -> dict:
        probs, loss = self._evaluate_arrays(arrays)
        self.last_probs = np.asarray(probs)
        out = classification_metrics(np.asarray(arrays.label), self.last_probs)
        out["loss"] = float(loss)
        return out

    def predict(self, arrays, model=None, *, state=None) -> np.ndarray:
        """Class probabilities `[N, 4]` for `TrackArrays` (labels may be -1)."""
        self._set_model(model, state)
        self._call_hook("on_predict_start")
        probs = np.asarray(self._evaluate_arrays(arrays)[0])
        self._call_hook("on_predict_end")
        return probs

    def predict_members(self, arrays, model=None, *, state=None) -> np.ndarray:
        """Every ensemble member's probabilities `[K, N, 4]` (a single model: `[1, N, 4]`)."""
        self._set_model(model, state)
        if not self.is_ensemble:
            return self.predict(arrays)[None]
        return np.asarray(self._evaluate_arrays(arrays, members=True)[0])


__all__ = ["EvaluationMixin"]

"""`Predictor`: a trained model ready to predict, without optimizer state or loss.

```python
predictor = Predictor(model, state, preprocessor, posterior=PosteriorMap(class_weights=w, temperature=1.3))
probs = predictor.predict_table(table)     # [N, 4] posteriors
members = predictor.member_probs(arrays)   # [K, N, 4] for an ensemble
```

It wraps the same pure, jitted `make_evaluate` pass the Trainer validates with, so
`pidx test`, `pidx predict`, the report, the export check and the calibration all see
exactly the probabilities training saw. The Trainer is for training.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..data.datamodule import TrackArrays, arrays_from_table
from ..data.io import TrackTable
from ..data.preprocess import Preprocessor
from ..data.stream_cache import ChunkedTracks
from ..models.ensemble import is_ensemble
from .posterior import PosteriorMap
from .feed import evaluate_chunks
from .step import auto_train_block, eval_block, make_evaluate

_TINY = 1e-30


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens over-confident probabilities, T < 1 sharpens."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), _TINY)) / float(temperature)
    logp -= logp.max(1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(1, keepdims=True)


class Predictor:
    """Model + state + preprocessing (+ the map from its outputs to posteriors).

    **Arguments:**

    - `model`, `state`: a trained `PIDModel` or `Ensemble` and its `eqx.nn.State`.
    - `preprocessor`: the fitted `Preprocessor` that turns raw tables into model inputs
      (only needed by `arrays` and `predict_table`).
    - `posterior`: the `PosteriorMap` applied by `probs` (class weights undone, the validation
      split's recalibration, abundances); None: `probs` are the raw outputs.
    - `eval_batch_size`: tracks per step of the jitted pass.
    """

    def __init__(self, model, state, preprocessor: Preprocessor | None = None, *,
                 posterior: PosteriorMap | None = None, eval_batch_size: int = 65536):
        self.model, self.state, self.preprocessor = model, state, preprocessor
        self.posterior, self.eval_batch_size = posterior, eval_batch_size
        self._params, static = eqx.partition(model, eqx.is_inexact_array)
        block = eval_block(auto_train_block(static, ensemble=self.is_ensemble))
        self._evaluate = {members: make_evaluate(static, None, eval_batch_size, ensemble=self.is_ensemble,
                                                 members=members, block_size=block) for members in (False, True)}

    @property
    def is_ensemble(self) -> bool:
        return is_ensemble(self.model)

    @property
    def layout(self):
        return self.model.layout

    def _run(self, arrays: TrackArrays | ChunkedTracks, members: bool) -> np.ndarray:
        if isinstance(arrays, ChunkedTracks):  # streamed from disk: chunk by chunk
            return evaluate_chunks(lambda chunk: (self._run(chunk, members), np.nan), arrays)[0]
        unlabelled = jnp.full(arrays.features.shape[0], -1, jnp.int32)
        probs, _ = self._evaluate[members](self._params, self.state, jnp.asarray(arrays.features),
                                           jnp.asarray(arrays.group_mask), unlabelled, jnp.ones(4))
        return np.asarray(probs)

    def raw_probs(self, arrays: TrackArrays) -> np.ndarray:
        """`[N, 4]` probabilities as the network gives them (members' mean for an ensemble): under
        class weights or the focal loss, not posteriors."""
        return self._run(arrays, False)

    def probs(self, arrays: TrackArrays) -> np.ndarray:
        """`[N, 4]` posteriors: the raw probabilities through the predictor's `PosteriorMap`."""
        probs = self.raw_probs(arrays)
        return probs if self.posterior is None else self.posterior(probs)

    def member_probs(self, arrays: TrackArrays) -> np.ndarray:
        """Every ensemble member's probabilities `[K, N, 4]` (a single model: `[1, N, 4]`)."""
        return self._run(arrays, True) if self.is_ensemble else self.raw_probs(arrays)[None]

    def arrays(self, table: TrackTable) -> TrackArrays:
        """Model inputs of a validated table, through the fitted preprocessing."""
        if self.preprocessor is None:
            raise ValueError("this Predictor has no preprocessor: pass preprocessor= to predict raw tables")
        return arrays_from_table(table, self.preprocessor)

    def predict_table(self, table: TrackTable) -> np.ndarray:
        """`probs` of a validated table."""
        return self.probs(self.arrays(table))


__all__ = ["Predictor", "apply_temperature"]

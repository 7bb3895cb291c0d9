"""`TrackArrays`: a split as model inputs (features, detector mask, label, momentum)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .io import TrackTable
from .preprocess import Preprocessor
from .schema import NUM_CLASSES


class TrackArrays(NamedTuple):
    """One split as arrays (a pytree, so it can live on the device).

    - `features`: `f32[N, F]` preprocessed features (see `FeatureLayout.feature_names`).
    - `group_mask`: `bool[N, G]` detector group present.
    - `label`: `i32[N]` class index (π, K, p, e), -1 where unlabelled.
    - `p`: `f32[N]` total momentum in GeV/c (for momentum-binned metrics).
    """

    features: Any
    group_mask: Any
    label: Any
    p: Any

    @property
    def num_tracks(self) -> int:
        return int(self.label.shape[0])


def arrays_from_table(table: TrackTable, preprocessor: Preprocessor) -> TrackArrays:
    import jax.numpy as jnp

    feats, mask = preprocessor.transform(table)
    labels = table.labels if table.labels is not None else np.full(len(table), -1, np.int32)
    return TrackArrays(jnp.asarray(feats), jnp.asarray(mask), jnp.asarray(labels, dtype=jnp.int32),
                       jnp.asarray(table.momentum, dtype=jnp.float32))


class ArrayDataModule:
    """A data module over ready arrays (already preprocessed), e.g. for synthetic problems.

    **Arguments:**

    - `train`, `val`, `test`: `TrackArrays` (test optional).
    - `preprocessor`: travels with checkpoints if given.
    - `train_weight`: per-track weights of the train split (`[N]`), or `None` (all 1).
    - `target`: an unlabelled sample (`TrackArrays`, labels ignored) for objectives that adapt to it.
    """

    def __init__(self, train: TrackArrays, val: TrackArrays, test: TrackArrays | None = None,
                 preprocessor: Preprocessor | None = None, *, train_weight=None, target: TrackArrays | None = None):
        self.train, self.val, self.test, self.preprocessor = train, val, test, preprocessor
        self.train_weight, self.target = train_weight, target

    def setup(self) -> "ArrayDataModule":
        return self

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(np.asarray(self.train.label), minlength=NUM_CLASSES)


__all__ = ["TrackArrays", "arrays_from_table", "ArrayDataModule"]

"""Fully connected baselines: SimpleNN and DNN (BatchNorm via `eqx.nn.State`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..data.schema import NUM_CLASSES, FeatureLayout
from .base import BATCH_AXIS, PIDModel, activation, linear_stack, split_key


class SimpleNN(PIDModel):
    """MLP over the whole feature vector (availability flags included).

    Default: Dense(512)-ReLU-Dropout(0.5) → 256 → 128 → 64 → Dense(4).

    **Arguments:**

    - `layout`: the feature layout (sets the input size).
    - `hidden`: widths of the hidden layers.
    - `dropout`: dropout rate after each hidden layer.
    - `activation`: `relu`, `gelu`, `silu`, `tanh` or a callable.
    - `num_classes`: output size (4: π, K, p, e).
    - `key`: PRNG key for initialisation (keyword-only).
    """

    layout: FeatureLayout = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    train_block: ClassVar[int | None] = 2048  # each track's own: no batch statistics
    layers: tuple[eqx.nn.Linear, ...]
    dropouts: tuple[eqx.nn.Dropout, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(self, layout: FeatureLayout, *, hidden: Sequence[int] = (512, 256, 128, 64),
                 dropout: float = 0.5, activation: str | Callable = "relu", num_classes: int = NUM_CLASSES, key):
        self.layout, self.num_classes, self.activation = layout, num_classes, _activation(activation)
        self.layers = linear_stack([layout.num_features, *hidden, num_classes], key=key)
        self.dropouts = tuple(eqx.nn.Dropout(dropout) for _ in hidden)

    def forward(self, x, mask, state, *, key=None):
        logits, _, state = self.represent(x, mask, state, key=key)
        return logits, state

    def represent(self, x, mask, state, *, key=None):
        keys = split_key(key, len(self.dropouts))
        for layer, drop, k in zip(self.layers[:-1], self.dropouts, keys):
            x = drop(self.activation(layer(x)), key=k)
        return self.layers[-1](x), x, state


class DNN(PIDModel):
    """Deeper MLP with BatchNorm: Dense(1024)-BN-ReLU-Dropout(0.5) → 512 → 256 → 128 → 64 → Dense(4).

    BatchNorm statistics live in `eqx.nn.State` and are averaged over the vmapped
    `"batch"` axis in training; inference uses the running averages.

    **Arguments:** as `SimpleNN`, plus

    - `momentum`: of the BatchNorm running averages.
    - `batch_norm_mode`: `batch` (default): training normalises by the batch's own statistics, as
      BatchNorm in Keras (the seed's) and PyTorch does. `ema`: by a running average into which each
      batch enters with weight 1 − momentum, which also scales the gradient through the statistics
      by that much and trains worse (equinox issue #659). In `batch` mode the Dense layers in front
      of a BatchNorm have no bias, which the batch mean would cancel. pidx's DNN always used `ema` before this
      argument existed; such a checkpoint loads with `batch_norm_mode: ema` in its recipe.
    """

    layout: FeatureLayout = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.BatchNorm, ...]
    dropouts: tuple[eqx.nn.Dropout, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(self, layout: FeatureLayout, *, hidden: Sequence[int] = (1024, 512, 256, 128, 64),
                 dropout: float = 0.5, activation: str | Callable = "relu", momentum: float = 0.99,
                 batch_norm_mode: str = "batch", num_classes: int = NUM_CLASSES, key):
        if batch_norm_mode not in BATCH_NORM_MODES:
            raise ValueError(f"batch_norm_mode must be one of {', '.join(BATCH_NORM_MODES)}, got {batch_norm_mode!r}")
        self.layout, self.num_classes, self.activation = layout, num_classes, _activation(activation)
        # batch statistics subtract a bias exactly, so it would only random-walk on float noise under
        # Adam and shift the running mean; `ema` mode keeps it (its checkpoints have it)
        self.layers = linear_stack([layout.num_features, *hidden, num_classes], key=key,
                                   hidden_bias=batch_norm_mode == "ema")
        self.norms = tuple(eqx.nn.BatchNorm(h, axis_name=BATCH_AXIS, momentum=momentum, mode=batch_norm_mode)
                           for h in hidden)
        self.dropouts = tuple(eqx.nn.Dropout(dropout) for _ in hidden)

    def forward(self, x, mask, state, *, key=None):
        logits, _, state = self.represent(x, mask, state, key=key)
        return logits, state

    def represent(self, x, mask, state, *, key=None):
        keys = split_key(key, len(self.dropouts))
        for layer, norm, drop, k in zip(self.layers[:-1], self.norms, self.dropouts, keys):
            h = layer(x)
            # batch statistics in f32: under bf16 compute the running mean/var (model state) stay f32
            y, state = norm(h.astype(jnp.float32), state)
            x = drop(self.activation(y.astype(h.dtype)), key=k)
        return self.layers[-1](x), x, state


def running_statistics(norm: eqx.nn.BatchNorm, state: eqx.nn.State) -> tuple[np.ndarray, np.ndarray]:
    """The (mean, variance) by which `norm` normalises at inference, in float64, as equinox computes
    them for its mode (`batch`: the zero-debiased running averages). For folding into a Dense layer."""
    if norm.mode == "ema":
        mean, var = state.get(norm.ema_state_index)
        return np.asarray(mean, np.float64), np.asarray(var, np.float64)
    counter = int(state.get(norm.batch_counter))
    mean, var = state.get(norm.batch_state_index)
    scale = 1.0 if counter == 0 else 1.0 - norm.momentum**counter
    return np.asarray(mean, np.float64) / scale, np.asarray(var, np.float64) / scale


_activation = activation  # the parameter named `activation` shadows the function inside __init__
BATCH_NORM_MODES = ("batch", "ema")

__all__ = ["SimpleNN", "DNN", "BATCH_NORM_MODES", "running_statistics"]

"""A small ONNX graph builder and the preprocessing graph of a fitted `Preprocessor`.

The builder keeps nodes and initializers (weights) in lists and hands out unique
tensor names, so the exporters read like the JAX forward passes they mirror:

```python
g = GraphBuilder()
h = g.linear("x", weight, bias)   # MatMul + Add
h = g.op("Relu", h)
```

Opset 17 (ONNX Runtime ≥ 1.12, the range O2Physics ships) is enough for every op used.
"""

from __future__ import annotations

import numpy as np

from ..data.layouts import get_layout
from ..data.schema import BAYES_FLAG, BAYES_MISSING_ROWS
from ..errors import ExportError
from ..models.base import ACTIVATIONS

OPSET = 17


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' package, a dependency of pidx: reinstall pidx "
                          "(python -m pip install .) or pip install onnx onnxruntime") from None
    return onnx, helper, numpy_helper


class GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        """An initializer holding `value` (weights, shapes, axes)."""
        _, _, numpy_helper = _onnx()
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        """One node with a single output; returns the output's name."""
        _, helper, _ = _onnx()
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # -------------------------------------------------------------- layers
    def linear(self, x: str, weight, bias=None) -> str:
        """`x @ weight.T + bias` for an `eqx.nn.Linear`-style `weight[out, in]`."""
        y = self.op("MatMul", x, self.const(np.asarray(weight, np.float32).T, "w"))
        return y if bias is None else self.op("Add", y, self.const(np.asarray(bias, np.float32), "b"))

    def activation(self, x: str, fn) -> str:
        """An activation function of `pidx.models.ACTIVATIONS` (as models store it), in opset-17 ops."""
        name = next((n for n, f in ACTIVATIONS.items() if f is fn), repr(fn))
        if name == "relu":
            return self.op("Relu", x)
        if name == "tanh":
            return self.op("Tanh", x)
        if name == "silu":
            return self.op("Mul", x, self.op("Sigmoid", x))
        if name == "gelu":  # jax.nn.gelu's default tanh approximation
            c = self.const(np.sqrt(2.0 / np.pi), "k")
            cube = self.op("Mul", self.op("Mul", x, x), x)
            inner = self.op("Add", x, self.op("Mul", cube, self.const(0.044715, "k")))
            t = self.op("Add", self.const(1.0, "one"), self.op("Tanh", self.op("Mul", inner, c)))
            return self.op("Mul", self.op("Mul", x, t), self.const(0.5, "half"))
        raise ExportError(f"activation {name!r} has no ONNX translation; accepted are relu, gelu, silu, tanh")

    def columns(self, x: str, indices) -> str:
        """`x[:, indices]`."""
        return self.op("Gather", x, self.const(list(indices), "idx", np.int64), axis=1)

    def any_of(self, conditions: list[str]) -> str:
        out = conditions[0]
        for c in conditions[1:]:
            out = self.op("Or", out, c)
        return out

    def row_reduce(self, cond: str, op: str) -> str:
        """Row-wise `any` (op="ReduceMax") or `all` (op="ReduceMin") of a bool `[N, k]`, as bool `[N, 1]`."""
        v = self.op(op, self.op("Cast", cond, to=1), axes=[1], keepdims=1)  # opset 17: axes is an attribute
        return self.op("Greater", v, self.const(0.5, "half"))


def input_columns(pre) -> tuple[str, ...]:
    """The exported model's input columns for a fitted `Preprocessor`: its file layout's model inputs
    (legacy: the 21 schema features; o2: the 46-value vector of pidOnnxInference), then any extra
    groups' columns."""
    return get_layout(pre.track_layout).model_inputs + extra_input_columns(pre)


def extra_input_columns(pre) -> tuple[str, ...]:
    """The model's input columns beyond its file layout's own (extra inputs and extra groups)."""
    return get_layout(pre.track_layout).extra_columns(pre.layout)


def preprocessing_graph(g: GraphBuilder, raw: str, pre, sentinels, ranges=None) -> tuple[str, str, str | None]:
    """Nodes that turn raw `f32[N, C]` into the model's features `f32[N, F]`, mask `bool[N, G]` and the
    rows no model can score `bool[N, 1]` (None when the layout cannot have them).

    Mirrors `validate_tracks` (with `implausible="absent"`) + `Preprocessor.transform` exactly, in
    float64 like numpy: the flags decide presence; a value no detector produces (±inf, or outside
    `ranges`) under a present flag makes its group absent; NaN, ±inf and sentinels become the train
    median in scaled columns; an absent group takes its `missing_fill`; the Bayes group is absent when
    a value is NaN/sentinel or the row is all 0 or all 0.25; a row whose always-present values (the
    kinematics) are implausible, or whose momentum is missing, cannot be scored.

    **Arguments:**

    - `g`: the builder.
    - `raw`: name of the raw input tensor, columns in `input_columns(pre)` order.
    - `pre`: the run's fitted `Preprocessor`.
    - `sentinels`: the run's `data.sentinels` (values that mean "missing").
    - `ranges`: plausible `(low, high)` per column (`pidx.data.layouts.PLAUSIBLE_RANGES`).
    """
    layout = pre.layout
    cols = {c: i for i, c in enumerate(input_columns(pre))}
    ranges = ranges or {}
    x = g.op("Cast", raw, to=11)  # float64: numpy computes the scaling in double

    def missing(values: str) -> str:
        conds = [g.op("IsNaN", values), g.op("IsInf", values)]
        conds += [g.op("Equal", values, g.const(float(s), "sentinel", np.float64)) for s in sentinels]
        return g.any_of(conds)

    def absent_value(values: str) -> str:  # NaN or a sentinel: missing, not implausible
        return g.any_of([g.op("IsNaN", values)] + [g.op("Equal", values, g.const(float(s), "sentinel", np.float64))
                                                   for s in sentinels])

    def implausible(group) -> str:
        """Per row: any value of `group` no detector produces (validate_tracks' `_implausible`)."""
        odd = []
        for c in group.columns:
            v = g.columns(x, [cols[c]])
            conds = [g.op("IsInf", v)]
            if c in ranges:
                lo, hi = ranges[c]
                conds += [g.op("Less", v, g.const(float(lo), "low", np.float64)),
                          g.op("Greater", v, g.const(float(hi), "high", np.float64))]
            odd.append(g.op("And", g.any_of(conds), g.op("Not", absent_value(v))))
        return g.any_of(odd)

    features, presence, unscorable = [], [], []
    for group in layout.groups:
        values = g.columns(x, [cols[c] for c in group.columns])
        if group.flag is None:
            present = None
            unscorable.append(implausible(group))
            momentum = [cols[c] for c in ("pt", "eta", "p") if c in group.columns]
            if momentum:  # no momentum, no track (validate_tracks: missing momentum is invalid)
                unscorable.append(g.row_reduce(absent_value(g.columns(x, momentum)), "ReduceMax"))
        elif group.flag == BAYES_FLAG:
            absent = [g.row_reduce(missing(values), "ReduceMax")]
            absent += [g.row_reduce(g.op("Equal", values, g.const(float(v), "fill", np.float64)), "ReduceMin")
                       for v in BAYES_MISSING_ROWS]
            present = g.op("Not", g.any_of(absent))
        else:
            present = g.op("Equal", g.columns(x, [cols[group.flag]]), g.const(1.0, "one", np.float64))
            present = g.op("And", present, g.op("Not", implausible(group)))
            if group.absent_if_invalid:  # a NaN/sentinel under a "present" flag: the group is absent
                present = g.op("And", present, g.op("Not", g.row_reduce(missing(values), "ReduceMax")))
        if group.scale:
            median = g.const([pre.median[c] for c in group.columns], "median", np.float64)
            scale = g.const([pre.scale[c] for c in group.columns], "scale", np.float64)
            values = g.op("Where", missing(values), median, values)
            values = g.op("Div", g.op("Sub", values, median), scale)
            if pre.knee is not None:  # preprocess.squash: sign(z)·(min(|z|, k) + log(1 + max(|z| − k, 0)))
                knee, size = g.const(pre.knee, "knee", np.float64), g.op("Abs", values)
                beyond = g.op("Max", g.op("Sub", size, knee), g.const(0.0, "zero", np.float64))
                tail = g.op("Log", g.op("Add", beyond, g.const(1.0, "one", np.float64)))
                size = g.op("Add", g.op("Min", size, knee), tail)
                values = g.op("Mul", g.op("Sign", values), size)
            values = g.op("Max", g.op("Min", values, g.const(pre.clip, "clip", np.float64)),
                          g.const(-pre.clip, "clip", np.float64))
        if present is not None:
            values = g.op("Where", present, values, g.const(group.missing_fill, "fill", np.float64))
        features.append(g.op("Cast", values, to=1))
        presence.append(present)

    ones = None
    mask_cols = []
    for present in presence:
        if present is None:  # always-present group: a True column shaped like the flags
            if ones is None:
                ones = g.op("Equal", g.columns(x, [0]), g.columns(x, [0]))
                ones = g.op("Or", ones, g.op("Not", ones))  # NaN != NaN: force True
            present = ones
        mask_cols.append(present)
    flags = [g.op("Cast", p, to=1) for p, grp in zip(presence, layout.groups) if grp.flag is not None]
    feats = g.op("Concat", *features, *flags, axis=1)
    mask = g.op("Concat", *mask_cols, axis=1)
    return feats, mask, (g.any_of(unscorable) if unscorable else None)


__all__ = ["OPSET", "GraphBuilder", "input_columns", "extra_input_columns", "preprocessing_graph"]

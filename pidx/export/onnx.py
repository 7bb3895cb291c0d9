"""ONNX export of a trained pidx model, preprocessing included, for ONNX Runtime / O2Physics.

The graph is written from the weights with `onnx.helper` (one translator per
architecture below), not traced: every op is a plain opset-17 op that any ONNX Runtime
O2Physics ships can run, the preprocessing (flags, sentinels, Bayes token, scaling) is
part of it, and BatchNorm is folded into the preceding Dense layer.

```
input  "tracks"        f32[N, 21]  raw features in schema order (NaN or sentinels for missing)
output "probabilities" f32[N, 4]   pi, ka, pr, el
```

Translators are looked up by the exact type of the model (pidx models are final), and the
FSE models' group embeddings by the exact type of each embedding module: a new
architecture or a new group embedding registers its own with `register_onnx_exporter`:
`fn(builder, model, state, feats, mask) -> logits` for a model,
`fn(builder, embedding, columns) -> token` for an embedding module.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import numpy as np

from ..errors import ExportError
from ..models.embeddings import GroupEmbedding, MLPGroupEmbedding
from ..models.fse import ClassifierHead, DetectorAwareFSE, FSEAttention, FSEEncoder
from ..models.mlp import DNN, SimpleNN, running_statistics
from .graph import GraphBuilder

_EXPORTERS: dict[type, Callable] = {}


def register_onnx_exporter(cls: type) -> Callable:
    """Decorator: `fn` translates modules of exactly the type `cls` (a model or a group embedding)."""
    def wrap(fn):
        _EXPORTERS[cls] = fn
        return fn
    return wrap


def _translator(module, what: str) -> Callable:
    fn = _EXPORTERS.get(type(module))
    if fn is None:
        raise ExportError(f"no ONNX translation for the {what} {type(module).__name__}; built-in ones: "
                          f"{', '.join(c.__name__ for c in _EXPORTERS)} (register one with "
                          "pidx.export.register_onnx_exporter)")
    return fn


def model_graph(g: GraphBuilder, model, state, feats: str, mask: str) -> str:
    """Logits `[N, C]` of `model` (in inference mode) for features `feats` and group mask `mask`."""
    return _translator(model, "model")(g, model, state, feats, mask)


def _linear(g: GraphBuilder, x: str, layer: eqx.nn.Linear) -> str:
    return g.linear(x, layer.weight, layer.bias)


@register_onnx_exporter(SimpleNN)
def _simplenn(g, model, state, feats, mask):
    h = feats
    for layer in model.layers[:-1]:
        h = g.activation(_linear(g, h, layer), model.activation)  # dropout is the identity at inference
    return _linear(g, h, model.layers[-1])


@register_onnx_exporter(DNN)
def _dnn(g, model, state, feats, mask):
    h = feats
    for layer, norm in zip(model.layers[:-1], model.norms):
        mean, var = running_statistics(norm, state)
        s = 1.0 / np.sqrt(var + norm.eps)
        if norm.channelwise_affine:
            s_w, shift = s * np.asarray(norm.weight, np.float64), np.asarray(norm.bias, np.float64)
        else:
            s_w, shift = s, 0.0
        w = np.asarray(layer.weight, np.float64) * s_w[:, None]  # BatchNorm folded into the Dense
        b = ((np.asarray(layer.bias, np.float64) if layer.bias is not None else 0.0) - mean) * s_w + shift
        h = g.activation(g.linear(h, w, b), model.activation)
    return _linear(g, h, model.layers[-1])


def _head(g: GraphBuilder, head: ClassifierHead, x: str) -> str:
    for layer in head.layers[:-1]:
        x = g.op("Relu", _linear(g, x, layer))
    return _linear(g, x, head.layers[-1])


def _heads(g: GraphBuilder, proj: eqx.nn.Linear, toks: str, num_heads: int) -> str:
    """`[N, G, d] → [N, H, G, d/H]`, as `MultiheadAttention._project` reshapes."""
    y = _linear(g, toks, proj)
    y = g.op("Reshape", y, g.const([0, 0, num_heads, -1], "shape", np.int64))
    return g.op("Transpose", y, perm=[0, 2, 1, 3])


@register_onnx_exporter(GroupEmbedding)
def _group_embedding(g, emb, columns):
    return g.activation(_linear(g, columns, emb.linear), emb.activation)


@register_onnx_exporter(MLPGroupEmbedding)
def _mlp_group_embedding(g, emb, columns):
    return g.activation(_linear(g, g.activation(_linear(g, columns, emb.hidden), emb.activation), emb.out),
                        emb.activation)


def _encode(g: GraphBuilder, encoder: FSEEncoder, feats: str, mask: str) -> str:
    """`FSEEncoder` for a batch: tokens, masked attention, LayerNorm, gate, masked mean."""
    layout = encoder.layout
    maskf = g.op("Cast", mask, to=1)
    toks = []
    for i, (emb, (a, b)) in enumerate(zip(encoder.group_embeddings(), layout.group_slices)):
        t = _translator(emb, f"embedding of group '{layout.groups[i].name}'")(g, emb, g.columns(feats, range(a, b)))
        t = g.op("Mul", t, g.columns(maskf, [i]))  # zero token where the group is missing
        toks.append(g.op("Unsqueeze", t, g.const([1], "axes", np.int64)))
    toks = g.op("Concat", *toks, axis=1)  # [N, G, d]

    att = encoder.attention
    q, k, v = (_heads(g, p, toks, att.num_heads) for p in (att.query_proj, att.key_proj, att.value_proj))
    qk_size = att.query_proj.weight.shape[0] // att.num_heads
    q = g.op("Div", q, g.const(np.sqrt(qk_size), "sqrt_d"))
    logits = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))  # [N, H, G, G]
    none_present = g.op("Not", g.row_reduce(mask, "ReduceMax"))
    key_mask = g.op("Or", mask, none_present)  # as encode(): an all-missing row attends everywhere
    key_mask = g.op("Unsqueeze", key_mask, g.const([1, 2], "axes", np.int64))  # [N, 1, 1, G]
    logits = g.op("Where", key_mask, logits, g.const(np.finfo(np.float32).min, "neg"))
    attn = g.op("MatMul", g.op("Softmax", logits, axis=-1), v)  # [N, H, G, d/H]
    attn = g.op("Transpose", attn, perm=[0, 2, 1, 3])
    attn = g.op("Reshape", attn, g.const([0, 0, -1], "shape", np.int64))
    attn = _linear(g, attn, att.output_proj)

    norm = encoder.norm
    h = g.op("Add", toks, attn)
    scale = norm.weight if norm.weight is not None else np.ones(encoder.hidden_dim)
    bias = norm.bias if norm.bias is not None else np.zeros(encoder.hidden_dim)
    h = g.op("LayerNormalization", h, g.const(scale, "ln_w"), g.const(bias, "ln_b"), axis=-1, epsilon=norm.eps)
    h = g.op("Mul", g.op("Sigmoid", _linear(g, h, encoder.gate)), h)

    w = g.op("Unsqueeze", maskf, g.const([2], "axes", np.int64))  # [N, G, 1]
    total = g.op("ReduceSum", g.op("Mul", h, w), g.const([1], "axes", np.int64), keepdims=0)
    count = g.op("ReduceSum", maskf, g.const([1], "axes", np.int64), keepdims=1)
    return g.op("Div", total, g.op("Max", count, g.const(1.0, "one")))


@register_onnx_exporter(FSEAttention)
def _fse(g, model, state, feats, mask):
    return _head(g, model.head, _encode(g, model.encoder, feats, mask))


@register_onnx_exporter(DetectorAwareFSE)
def _fse_detector_aware(g, model, state, feats, mask):
    pooled = _encode(g, model.encoder, feats, mask)  # group dropout is off at inference
    e = g.op("Relu", _linear(g, g.op("Cast", mask, to=1), model.pattern_embed))
    pooled = g.op("Mul", pooled, g.op("Sigmoid", _linear(g, e, model.pattern_gate)))
    film = g.op("Add", g.const(1.0, "one"), _linear(g, e, model.pattern_scale))
    pooled = g.op("Add", g.op("Mul", pooled, film), _linear(g, e, model.pattern_shift))
    return _head(g, model.head, g.op("Concat", pooled, e, axis=1))


__all__ = ["register_onnx_exporter", "model_graph"]

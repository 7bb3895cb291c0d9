"""Where an FSE train step spends its time: the step taken apart, each part timed compiled on its own.

    python benchmarks/fse_profile.py                        # fse_phase1 at d=64 and d=256, batch 1024
    python benchmarks/fse_profile.py --batch 8192 --hidden-dims 64

Each row is a jitted function of one batch, forward and backward (gradients with respect to the
part's own weights and its input), timed over `--repeats` calls after a warm-up: the group
embeddings alone (as one batched product and group by group), the attention block alone (pidx's
`masked_self_attention` and `eqx.nn.MultiheadAttention` with the same weights), the encoder
(embeddings, attention, LayerNorm, gate, pooling), the whole model, and one step of the Trainer's own
train chunk (`make_train_chunk`: cross-entropy, Adam), on the whole batch and in blocks of the model's
`train_block` rows (what `Trainer` does on a CPU). The differences say what attention, the head, the optimizer and the batch's size in memory cost.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pidx.data.layouts import get_layout
from pidx.data.schema import DEFAULT_LAYOUT, NUM_CLASSES
from pidx.models import build_model
from pidx.models.attention import masked_self_attention
from pidx.models.base import batched_forward
from pidx.training import CrossEntropy
from pidx.training.objectives import Classification
from pidx.training.step import StepInputs, TrainState, make_optimizer, make_train_chunk, step_blocks


def timed(fn, *args, repeats: int) -> float:
    """Median seconds of `fn(*args)` (compiled first)."""
    jax.block_until_ready(fn(*args))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs))


def parts(model, state, x, mask, keys):
    enc = model.encoder
    per_group = eqx.tree_at(lambda m: m.embeddings, enc, enc.group_embeddings())

    def embed_loss(e, x):
        return jax.vmap(lambda xi, mi: e.tokens(xi, mi))(x, mask).sum()

    tokens = jax.vmap(lambda xi, mi: enc.tokens(xi, mi))(x, mask)
    groups = mask.shape[1]

    def pidx_attention_loss(a, t):
        return jnp.tanh(jax.vmap(lambda ti, mi: masked_self_attention(a, ti, mi))(t, mask)).sum()

    def eqx_attention_loss(a, t):
        return jnp.tanh(jax.vmap(lambda ti, mi: a(ti, ti, ti, mask=jnp.broadcast_to(mi[None], (groups, groups))))(
            t, mask)).sum()

    def encoder_loss(e, x):
        return jax.vmap(lambda xi, mi: e(xi, mi))(x, mask).sum()

    def model_loss(m, x):
        logits, _ = batched_forward(m, x, mask, state, keys)
        return jax.nn.logsumexp(logits, -1).mean()

    def train_step(block_size):
        """One step of the Trainer's own train chunk (`make_train_chunk`: cross-entropy, Adam, dropout),
        on the whole batch or in blocks of `block_size` rows; it threads its donated state from call to call."""
        params, static = eqx.partition(model, eqx.is_inexact_array)
        params, model_state = jax.tree.map(jnp.copy, (params, state))  # the chunk donates what it is given
        optimizer = make_optimizer("adam", 1e-3)
        chunk = make_train_chunk(static, Classification(CrossEntropy()), optimizer, block_size=block_size)
        n = x.shape[0]
        held = [TrainState(params, optimizer.init(params), model_state, None, None, jnp.uint32(0),
                           jax.random.PRNGKey(0))]
        data = (x, mask, jnp.zeros(n, jnp.int32), jnp.ones(n, jnp.float32))
        inputs = StepInputs(jnp.ones(NUM_CLASSES), None, jnp.float32(1e6))
        idx = jnp.arange(n, dtype=jnp.int32)[None]

        def run():
            held[0], out = chunk(held[0], idx, data, inputs)
            return out

        return run

    block = type(model).train_block
    blocks = step_blocks(x.shape[0], block, Classification(CrossEntropy()))

    grad = eqx.filter_jit(eqx.filter_grad(embed_loss))
    return {"group embeddings (batched product)": (grad, enc, x),
            "group embeddings (group by group)": (eqx.filter_jit(eqx.filter_grad(embed_loss)), per_group, x),
            "attention alone (pidx: masked_self_attention)": (
                eqx.filter_jit(eqx.filter_grad(pidx_attention_loss)), enc.attention, tokens),
            "attention alone (eqx.nn.MultiheadAttention, same weights)": (
                eqx.filter_jit(eqx.filter_grad(eqx_attention_loss)), enc.attention, tokens),
            "encoder: embeddings, attention, LayerNorm, gate, pooling": (
                eqx.filter_jit(eqx.filter_grad(encoder_loss)), enc, x),
            "whole model, forward and backward": (eqx.filter_jit(eqx.filter_grad(model_loss)), model, x),
            "whole train step with Adam (the Trainer's train chunk, whole batch)": (train_step(None),),
            f"the same step in {blocks} blocks of {x.shape[0] // blocks} (the Trainer's on a CPU)": (
                train_step(block),)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="fse_phase1")
    ap.add_argument("--hidden-dims", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--recipe-config", action="store_true",
                    help="the recipes' FSE: O2 layout (7 groups), mlp group embeddings, SiLU (default: the legacy "
                         "layout's 4 groups, dense, ReLU, as benchmarks/throughput.py)")
    args = ap.parse_args(argv)
    layout = get_layout("o2").features if args.recipe_config else DEFAULT_LAYOUT
    extra = {"group_embedding": "mlp", "activation": "silu"} if args.recipe_config else {}
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, layout.num_features)), jnp.float32)
    mask = jnp.asarray(rng.random((args.batch, layout.num_groups)) < 0.6).at[:, -1].set(True)  # kinematics
    keys = jax.random.split(jax.random.PRNGKey(0), args.batch)
    print(f"device: {jax.devices()[0].device_kind}; {args.model}, batch {args.batch}, median of {args.repeats}\n")
    print("| d | part | ms per step | tracks/s |\n|---|---|---:|---:|")
    for d in args.hidden_dims:
        model, state = build_model(args.model, layout, key=jax.random.PRNGKey(0), hidden_dim=d, **extra)
        for name, (fn, *fargs) in parts(model, state, x, mask, keys).items():
            s = timed(fn, *fargs, repeats=args.repeats)
            print(f"| {d} | {name} | {1e3 * s:.2f} | {args.batch / s:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

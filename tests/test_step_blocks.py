"""The FSE hot path: attention computed from eqx.nn.MultiheadAttention's weights, and a train step
computed over cache-sized blocks of its batch. Both must be the same mathematics as before."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import detector_datamodule
import pidx
from pidx.errors import TrainingError
from pidx.models import build_model
from pidx.models.attention import BROADCAST_MAX_GROUPS, BROADCAST_MAX_WIDTH, masked_self_attention
from pidx.training import DANN, CrossEntropy
from pidx.training.objectives import Classification
from pidx.training.step import step_blocks


@pytest.mark.parametrize("dim,heads,groups", [(64, 4, 7), (256, 4, 4), (64, 4, 4), (32, 1, 3), (128, 2, 5)])
def test_attention_is_equinox_multihead_attention(dim, heads, groups):
    """Both forms (broadcast products for few groups and narrow heads, einsum otherwise) give what
    eqx.nn.MultiheadAttention gives with the same weights and key mask, values and gradients."""
    attention = eqx.nn.MultiheadAttention(heads, dim, key=jax.random.PRNGKey(dim + groups))
    tokens = jax.random.normal(jax.random.PRNGKey(1), (40, groups, dim))
    mask = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (40, groups)).at[:, 0].set(True)

    def theirs(a, t):
        return jax.vmap(lambda ti, mi: a(ti, ti, ti, mask=jnp.broadcast_to(mi[None], (groups, groups))))(t, mask)

    def mine(a, t):
        return jax.vmap(lambda ti, mi: masked_self_attention(a, ti, mi))(t, mask)

    np.testing.assert_allclose(mine(attention, tokens), theirs(attention, tokens), atol=2e-6)
    loss = lambda f: lambda a, t: jnp.sum(jnp.tanh(f(a, t)) * jnp.arange(dim) / dim)  # noqa: E731
    for g_mine, g_theirs in zip(jax.tree.leaves(eqx.filter_grad(loss(mine))(attention, tokens)),
                                jax.tree.leaves(eqx.filter_grad(loss(theirs))(attention, tokens))):
        np.testing.assert_allclose(g_mine, g_theirs, atol=2e-5)
    # an absent group's token does not reach any query
    moved = tokens.at[:, 1].add(jnp.where(mask[:, 1:2], 0.0, 100.0))
    np.testing.assert_allclose(mine(attention, moved)[:, 0], mine(attention, tokens)[:, 0], atol=1e-5)
    broadcast = groups <= BROADCAST_MAX_GROUPS and dim // heads <= BROADCAST_MAX_WIDTH
    assert broadcast == ((dim, heads, groups) in {(64, 4, 4), (32, 1, 3)})  # both forms are tested


def test_step_blocks_splits_only_what_averages_back():
    ce = Classification(CrossEntropy())
    assert step_blocks(1024, 512, ce) == 2
    assert step_blocks(4096, 512, ce) == 8
    assert step_blocks(1000, 512, ce) == 2  # 500 rows a block: the largest divisor in [256, 512]
    assert step_blocks(1031, 512, ce) == 1  # a prime: no equal blocks
    assert step_blocks(512, 512, ce) == 1
    assert step_blocks(4096, None, ce) == 1
    assert step_blocks(4096, 512, ce, has_target=True) == 1
    assert step_blocks(4096, 512, DANN()) == 1  # not a per-track mean
    assert step_blocks(4096, 512, Classification(lambda lg, y, cw, w=None: jnp.mean(lg))) == 1


def _fit(name, step_block, optimizer="sgd", **kw):
    model, state = build_model(name, pidx.DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), **kw)
    trainer = pidx.Trainer(max_epochs=2, batch_size=1024, optimizer=optimizer, learning_rate=0.05,
                           step_block=step_block, enable_progress_bar=False, default_root_dir="/tmp/pidx-blocks",
                           loss=CrossEntropy())
    trainer.fit(model, detector_datamodule(n_train=4096, n_val=1024), state=state)
    return trainer


@pytest.mark.parametrize("name", ["fse_phase1", "simplenn"])
def test_a_blocked_step_trains_as_the_whole_batch(name):
    """Blocks of 256 rows (4 per batch, dropout on: each track keeps the key the whole batch draws it)
    end two epochs where whole batches do, to float rounding (plain SGD: Adam would magnify the
    rounding of gradients that are zero in one and 1e-12 in the other)."""
    whole, blocked = _fit(name, None), _fit(name, 256)
    assert whole.summary["step_blocks"] == 1 and blocked.summary["step_blocks"] == 4
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(blocked.params)):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
    assert whole.history[-1]["val/loss"] == pytest.approx(blocked.history[-1]["val/loss"], rel=1e-5)
    assert whole.history[-1]["train/accuracy"] == pytest.approx(blocked.history[-1]["train/accuracy"], abs=1e-3)


def test_auto_blocks_on_a_cpu_only_models_whose_tracks_are_independent(monkeypatch):
    assert _fit("fse_phase0", "auto", hidden_dim=16).summary["step_blocks"] == 2  # train_block 512
    assert _fit("dnn", "auto", hidden=(32, 16)).summary["step_blocks"] == 1  # BatchNorm: whole batches
    with pytest.raises(TrainingError, match="DNN computes each batch whole"):
        _fit("dnn", 256, hidden=(32, 16))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _fit("fse_phase0", "auto", hidden_dim=16).summary["step_blocks"] == 1
    for bad in (0, -5, "fast", 2.5, True):
        with pytest.raises(TrainingError, match="step_block must be"):
            pidx.Trainer(step_block=bad)


def test_evaluation_in_blocks_gives_the_same_outputs(monkeypatch):
    """The evaluation pass in blocks of 2 × train_block rows (a CPU's default) gives what whole
    batches give, to float rounding, padding included (1,500 rows: 2 blocks of 1,024, the second padded)."""
    from pidx.training.step import auto_train_block, eval_block, make_evaluate

    model, state = build_model("fse_phase1", pidx.DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden_dim=16)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    assert eval_block(auto_train_block(static)) == 1024
    x = jax.random.normal(jax.random.PRNGKey(1), (1500, pidx.DEFAULT_LAYOUT.num_features))
    mask = jax.random.bernoulli(jax.random.PRNGKey(2), 0.6, (1500, pidx.DEFAULT_LAYOUT.num_groups)).at[:, 0].set(True)
    label = jnp.arange(1500) % 4
    whole = make_evaluate(static, CrossEntropy(), 65536)(params, state, x, mask, label, jnp.ones(4))
    blocked = make_evaluate(static, CrossEntropy(), 65536, block_size=1024)(params, state, x, mask, label, jnp.ones(4))
    np.testing.assert_allclose(blocked[0], whole[0], atol=1e-6)
    assert float(blocked[1]) == pytest.approx(float(whole[1]), rel=1e-6)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert eval_block(auto_train_block(static)) is None
    _, dnn_static = eqx.partition(build_model("dnn", pidx.DEFAULT_LAYOUT, key=jax.random.PRNGKey(0))[0],
                                  eqx.is_inexact_array)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert eval_block(auto_train_block(dnn_static)) is None


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_token_norm_is_equinox_layer_norm(dtype):
    from pidx.models.fse import token_norm

    norm = eqx.nn.LayerNorm(24)
    affine = (jax.random.normal(jax.random.PRNGKey(3), (24,)), jax.random.normal(jax.random.PRNGKey(4), (24,)))
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, affine)
    tokens = (3.0 * jax.random.normal(jax.random.PRNGKey(5), (6, 24)) + 1.0).astype(dtype)
    tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(np.asarray(token_norm(norm, tokens), np.float32),
                               np.asarray(jax.vmap(norm)(tokens), np.float32), atol=tolerance)
    assert token_norm(norm, tokens).dtype == dtype

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from pidx.data.schema import DEFAULT_LAYOUT, DetectorGroup, make_layout
from pidx.models import DNN, DetectorAwareFSE, FSEAttention, SimpleNN, StackedGroupEmbeddings, build_model
from pidx.training.step import batched_forward

NAMES = ["simplenn", "dnn", "fse_phase0", "fse_phase1"]


def make(name, layout=DEFAULT_LAYOUT, **kw):
    return build_model(name, layout, key=jax.random.PRNGKey(0), **kw)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_finite(name):
    model, state = make(name)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 22))
    mask = jnp.ones((16, 4), bool)
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    logits, new_state = jax.jit(lambda x, m, k: batched_forward(model, x, m, state, k))(x, mask, keys)
    assert logits.shape == (16, 4) and bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shapes_and_dtypes_fail_at_trace_time(name):
    model, state = make(name)
    mask = jnp.ones(4, bool)
    with pytest.raises(TypeCheckError, match="Float"):
        jax.jit(lambda x: model(x, mask, state))(jnp.ones(22, jnp.int32))
    with pytest.raises(TypeCheckError):
        jax.jit(lambda x: model(x, mask, state))(jnp.ones((2, 22)))  # a batch, not one track
    with pytest.raises(ValueError, match="expects 22 features"):
        jax.jit(lambda x: model(x, mask, state))(jnp.ones(21))
    with pytest.raises(ValueError, match="mask over 4 groups"):
        jax.jit(lambda x: model(x, jnp.ones(3, bool), state))(jnp.ones(22))


@pytest.mark.parametrize("cls", [FSEAttention, DetectorAwareFSE])
def test_fse_ignores_values_of_missing_groups_and_handles_kinematics_only(cls):
    model = eqx.nn.inference_mode(cls(DEFAULT_LAYOUT, key=jax.random.PRNGKey(0)))
    state = eqx.nn.State(model)
    x = jax.random.normal(jax.random.PRNGKey(1), (22,))
    only_kin = jnp.array([False, False, False, True])
    a, _ = model(x, only_kin, state)
    b, _ = model(x.at[:14].set(123.0), only_kin, state)  # garbage in all missing groups
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with_tof = jnp.array([True, True, True, True])
    c, _ = model(x.at[5:10].set(5.0), with_tof, state)
    assert not np.allclose(a, c)


def test_fse_embeds_each_group_separately():
    model = FSEAttention(DEFAULT_LAYOUT, hidden_dim=32, num_heads=4, key=jax.random.PRNGKey(0))
    in_sizes = [e.linear.in_features for e in model.encoder.group_embeddings()]
    assert in_sizes == [5, 5, 4, 5] and all(e.linear.out_features == 32 for e in model.encoder.group_embeddings())


def test_phase1_group_dropout_only_in_training():
    model = DetectorAwareFSE(DEFAULT_LAYOUT, group_dropout=0.5, dropout=0.0, key=jax.random.PRNGKey(0))
    state = eqx.nn.State(model)
    x = jax.random.normal(jax.random.PRNGKey(1), (22,))
    mask = jnp.ones(4, bool)
    outs = {tuple(np.round(np.asarray(model(x, mask, state, key=jax.random.PRNGKey(k))[0]), 5)) for k in range(20)}
    assert len(outs) > 1  # different groups hidden for different keys
    inf = eqx.nn.inference_mode(model)
    np.testing.assert_array_equal(inf(x, mask, state)[0], inf(x, mask, state, key=jax.random.PRNGKey(3))[0])
    dropped = model.drop_groups(jnp.ones(4, bool), jax.random.PRNGKey(0))
    assert bool(dropped[3])  # kinematics (no flag) is never hidden


def test_dnn_batchnorm_state_updates_in_training():
    model, state = make("dnn")
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 22)) * 4 + 2
    keys = jax.random.split(jax.random.PRNGKey(2), 32)
    before = [np.asarray(a) for a in jax.tree.leaves(state)]
    _, new_state = jax.jit(lambda x, k: batched_forward(model, x, jnp.ones((32, 4), bool), state, k))(x, keys)
    after = jax.tree.leaves(new_state)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def _trained_state(model, state, x, steps=3):
    """`state` after a few training batches (running statistics populated)."""
    keys = jax.random.split(jax.random.PRNGKey(2), len(x))
    step = jax.jit(lambda s: batched_forward(model, x, jnp.ones((len(x), 4), bool), s, keys)[1])
    for _ in range(steps):
        state = step(state)
    return state


@pytest.mark.parametrize("mode", ["batch", "ema"])
def test_dnn_training_normalises_by_the_batch_only_in_batch_mode(mode):
    """Standard BatchNorm (Keras, PyTorch) trains on the batch's own statistics, so the running
    averages do not enter a training step; equinox's `ema` mode trains on them."""
    model, state = make("dnn", hidden=(16, 8), dropout=0.0, batch_norm_mode=mode)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 22)) * 3 + 1
    state = _trained_state(model, state, x)
    shifted = jax.tree.map(lambda a: a + 5.0 if jnp.issubdtype(a.dtype, jnp.floating) else a, state)
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    out, out_shifted = (batched_forward(model, x, jnp.ones((64, 4), bool), s, keys)[0] for s in (state, shifted))
    moved = float(jnp.abs(out - out_shifted).max())
    assert (moved == 0.0) if mode == "batch" else (moved > 1e-3)
    assert model.norms[0].mode == mode and make("dnn")[0].norms[0].mode == "batch"  # the default
    # a bias in front of batch statistics cancels exactly: none there, but in the output layer
    assert [layer.bias is None for layer in model.layers] == [mode == "batch"] * 2 + [False]
    with pytest.raises(ValueError, match="batch_norm_mode must be one of batch, ema, got 'renorm'"):
        make("dnn", batch_norm_mode="renorm")


@pytest.mark.parametrize("mode", ["batch", "ema"])
def test_running_statistics_are_what_inference_normalises_by(mode):
    """`running_statistics` (which the ONNX export folds into the Dense layers) reproduces the
    DNN's inference output, in either mode."""
    from pidx.models.mlp import running_statistics

    model, state = make("dnn", hidden=(16, 8), dropout=0.0, batch_norm_mode=mode)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 22)) * 3 + 1
    state = _trained_state(model, state, x, steps=5)
    want = batched_forward(eqx.nn.inference_mode(model), x, jnp.ones((64, 4), bool), state)[0]
    h = np.asarray(x, np.float64)
    for layer, norm in zip(model.layers[:-1], model.norms):
        mean, var = running_statistics(norm, state)
        z = h @ np.asarray(layer.weight, np.float64).T + (0.0 if layer.bias is None else np.asarray(layer.bias))
        z = (z - mean) / np.sqrt(var + norm.eps) * np.asarray(norm.weight) + np.asarray(norm.bias)
        h = np.maximum(z, 0.0)
    got = h @ np.asarray(model.layers[-1].weight, np.float64).T + np.asarray(model.layers[-1].bias)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4)
    assert np.abs(got).max() > 0.1  # a non-trivial output


def test_dnn_checkpoint_of_the_other_mode_is_refused(tmp_path):
    """A DNN saved with `ema` statistics (pidx's DNN before `batch_norm_mode`) does not load silently
    into the default `batch` mode, whose state has the same number of arrays."""
    from pidx.errors import CheckpointError
    from pidx.training.checkpoint import load_tree

    _, ema_state = make("dnn", hidden=(16, 8), batch_norm_mode="ema")
    eqx.tree_serialise_leaves(tmp_path / "model_state.eqx", ema_state)
    _, batch_state = make("dnn", hidden=(16, 8))
    with pytest.raises(CheckpointError, match="does not match the model being loaded"):
        load_tree(tmp_path, "model_state", batch_state)
    assert load_tree(tmp_path, "model_state", make("dnn", hidden=(16, 8), batch_norm_mode="ema")[1]) is not None


def test_sizes_configurable_and_unknown_model():
    model, _ = make("simplenn", hidden=(8, 8), dropout=0.1)
    assert [l.out_features for l in model.layers] == [8, 8, 4]
    model, _ = make("fse_phase0", hidden_dim=16, num_heads=2)
    assert model.encoder.hidden_dim == 16
    with pytest.raises(ValueError, match="did you mean 'fse_phase1'"):
        make("fse_phase2")
    with pytest.raises(ValueError, match="bad parameters"):
        make("dnn", widths=(3,))


def test_extra_group_grows_a_token():
    trd = DetectorGroup("trd", ("trd_signal", "trd_nsigma_el"), flag="has_trd")
    layout = make_layout([trd])
    model = FSEAttention(layout, key=jax.random.PRNGKey(0))
    assert len(model.encoder.group_embeddings()) == 5 and model.encoder.group_embeddings()[3].linear.in_features == 2
    out, _ = model(jnp.ones(layout.num_features), jnp.ones(5, bool), eqx.nn.State(model),
                   key=jax.random.PRNGKey(1))
    assert out.shape == (4,)
    assert isinstance(SimpleNN(layout, key=jax.random.PRNGKey(0)), SimpleNN) and DNN


def test_an_absent_group_is_as_if_the_layout_had_none():
    """Masked attention and masked pooling: with TOF absent, Phase 0 gives exactly what the same weights
    give on a layout without a TOF group at all (an absent token neither attends, is attended to, nor
    counts in the mean)."""
    from pidx.data.schema import FeatureLayout

    full = eqx.nn.inference_mode(FSEAttention(DEFAULT_LAYOUT, hidden_dim=32, key=jax.random.PRNGKey(0)))
    names = DEFAULT_LAYOUT.group_names
    keep = [i for i, n in enumerate(names) if n != "tof"]
    small_layout = FeatureLayout(tuple(DEFAULT_LAYOUT.groups[i] for i in keep))
    small = FSEAttention(small_layout, hidden_dim=32, key=jax.random.PRNGKey(1))
    small = eqx.tree_at(lambda m: (m.encoder.embeddings, m.encoder.attention, m.encoder.norm, m.encoder.gate, m.head),
                        small, (StackedGroupEmbeddings(tuple(full.encoder.group_embeddings()[i] for i in keep),
                                               small_layout.group_slices), full.encoder.attention,
                                full.encoder.norm, full.encoder.gate, full.head))
    small = eqx.nn.inference_mode(small)
    x = jax.random.normal(jax.random.PRNGKey(2), (DEFAULT_LAYOUT.num_features,))
    mask = jnp.array([n != "tof" for n in names])
    slices = dict(zip(names, DEFAULT_LAYOUT.group_slices))
    parts = [x[slices[n][0]:slices[n][1]] for n in names if n != "tof"]
    flags = jnp.ones(len(small_layout.flagged_groups))
    x_small = jnp.concatenate(parts + [flags])
    a, _ = full(x, mask, eqx.nn.State(full))
    b, _ = small(x_small, jnp.ones(len(keep), bool), eqx.nn.State(small))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("embedding", ["dense", "mlp"])
def test_stacked_embeddings_are_the_per_group_modules(embedding, backend, monkeypatch):
    """The built-in embeddings run as one batched product over stacked, zero-padded weights: outputs and
    gradients equal those of the same weights called group by group, and the padding gets no gradient
    (on a CPU the layers past the first take one product per group: both paths traced here)."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    model = DetectorAwareFSE(DEFAULT_LAYOUT, hidden_dim=32, dropout=0.0, group_embedding=embedding,
                             key=jax.random.PRNGKey(0))
    stacked = model.encoder.embeddings
    assert isinstance(stacked, StackedGroupEmbeddings)
    per_group = eqx.tree_at(lambda m: m.encoder.embeddings, model, model.encoder.group_embeddings())
    assert isinstance(per_group.encoder.embeddings, tuple)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, DEFAULT_LAYOUT.num_features))
    mask = jax.random.bernoulli(jax.random.PRNGKey(2), 0.6, (64, DEFAULT_LAYOUT.num_groups)).at[:, 0].set(True)
    state = eqx.nn.State(model)

    def loss(m):
        logits, _ = batched_forward(m, x, mask, state)
        return jax.nn.logsumexp(logits, axis=-1).mean() - logits[:, 0].mean()

    np.testing.assert_allclose(batched_forward(model, x, mask, state)[0],
                               batched_forward(per_group, x, mask, state)[0], atol=1e-5)
    g_stacked, g_group = eqx.filter_grad(loss)(model), eqx.filter_grad(loss)(per_group)
    for mine, theirs in zip(g_stacked.encoder.embeddings.unstack(), g_group.encoder.embeddings):
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    first = g_stacked.encoder.embeddings.weights[0]
    for g, size in enumerate(stacked.sizes):
        assert np.all(np.asarray(first[g, size:]) == 0.0)  # padded rows: no gradient, so they stay zero
        assert np.all(np.asarray(stacked.weights[0][g, size:]) == 0.0)

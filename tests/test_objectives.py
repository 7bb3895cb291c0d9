"""The training objective as an extension point, per-track weights, DANN, reweighting and the data scenario."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import pidx
from helpers import detector_arrays
from pidx.cli import main
from pidx.data import ArrayDataModule
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.models import build_model
from pidx.training.domain import DANN, conditioned, gradient_reversal, reversal_ramp
from pidx.training.losses import CrossEntropy, FocalLoss
from pidx.training.objectives import init_objective
from pidx.training.reweight import domain_weights


def _trainer(loss, **kw):
    return pidx.Trainer(max_epochs=kw.pop("max_epochs", 2), batch_size=256, loss=loss, enable_progress_bar=False,
                        class_weights="none", **kw)


def _fit(name, loss, dm, *, seed=0, params=None, **kw):
    model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(seed), **(params or {}))
    trainer = _trainer(loss, **kw)
    trainer.fit(model, dm, state=state)
    return trainer


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


@pytest.mark.parametrize("loss", [CrossEntropy(), FocalLoss(gamma=1.5, alpha=0.3)])
def test_per_track_weights_enter_the_loss_and_its_gradient_as_defined(loss):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, 64), jnp.int32)
    cw = jnp.asarray([1.0, 2.0, 0.5, 3.0])
    w = jnp.asarray(rng.integers(0, 3, 64), jnp.float32)  # 0, 1 or 2 copies of each track
    rows = np.repeat(np.arange(64), np.asarray(w, int))
    weighted = jax.value_and_grad(lambda lg: loss(lg, labels, cw, w) * 64)(logits)
    copies = jax.value_and_grad(lambda lg: loss(lg[rows], labels[rows], cw) * len(rows))(logits)
    np.testing.assert_allclose(weighted[0], copies[0], rtol=1e-5)
    np.testing.assert_allclose(weighted[1], copies[1], rtol=1e-5, atol=1e-6)
    assert float(loss(logits, labels, cw, jnp.ones(64))) == float(loss(logits, labels, cw))


def test_track_weights_reach_the_trainers_gradient():
    """SGD's first update is −lr · gradient: weights of 2 on every track double it, weights of 0 on one
    class leave the output bias of that class where a fit that never saw it would."""
    tr, va = detector_arrays(512, 0), detector_arrays(256, 1)
    fits = {}
    for tag, weight in {"one": np.ones(512), "two": np.full(512, 2.0)}.items():
        dm = ArrayDataModule(tr, va, train_weight=weight)
        model, state = build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(16,), dropout=0.0)
        t = pidx.Trainer(max_epochs=1, batch_size=512, loss=CrossEntropy(), optimizer="sgd", learning_rate=0.1,
                         class_weights="none", enable_progress_bar=False)
        t.fit(model, dm, state=state)
        fits[tag] = (model, t)
    start = _leaves(fits["one"][0])
    one, two = _leaves(fits["one"][1].model), _leaves(fits["two"][1].model)
    for a0, a1, a2 in zip(start, one, two):
        np.testing.assert_allclose(a2 - a0, 2.0 * (a1 - a0), rtol=1e-4, atol=1e-7)
    assert any(np.abs(a1 - a0).max() > 1e-4 for a0, a1 in zip(start, one))


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = jnp.asarray([0.3, -1.2, 2.0])
    f = lambda v: jnp.sum(jnp.sin(v) * v)  # noqa: E731
    plain = jax.grad(f)(x)
    reversed_ = jax.grad(lambda v: f(gradient_reversal(v, jnp.float32(0.7))))(x)
    np.testing.assert_allclose(reversed_, -0.7 * plain, rtol=1e-6)
    assert float(gradient_reversal(x, 0.7)[1]) == float(x[1])
    assert float(reversal_ramp(0.0, 2.0)) == 0.0 and abs(float(reversal_ramp(1.0, 2.0)) - 2.0) < 1e-3


def test_dann_reaches_the_model_only_through_the_reversal():
    """With a reversal weight of 0 the domain loss trains the domain classifier but sends the model no
    gradient: the model ends as a cross-entropy fit's (to float round-off of the fused program); with a
    weight it ends elsewhere."""
    tr, va, tg = detector_arrays(1024, 0), detector_arrays(256, 1), detector_arrays(1024, 5, shift=2.0)
    dm = ArrayDataModule(tr, va, target=tg)
    plain = _fit("simplenn", CrossEntropy(), dm, params={"hidden": (32, 16)})
    off = _fit("simplenn", DANN(CrossEntropy(), weight=0.0, ramp=False), dm, params={"hidden": (32, 16)})
    on = _fit("simplenn", DANN(CrossEntropy(), weight=1.0, ramp=False), dm, params={"hidden": (32, 16)})
    for a, b in zip(_leaves(plain.model), _leaves(off.model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(_leaves(plain.model), _leaves(on.model))) > 1e-3
    history = pd.DataFrame(off.history)
    assert {"train/domain_loss", "train/domain_accuracy", "train/reversal"} <= set(history.columns)
    assert np.isfinite(history["train/domain_loss"]).all() and (history["train/reversal"] == 0).all()
    fresh, _, _ = init_objective(off.objective, plain.params, plain.static, plain.model_state, off.optimizer, 0,
                                 ensemble=False)  # the domain classifier as it started: it has learnt since
    assert max(np.abs(a - b).max() for a, b in zip(_leaves(fresh), _leaves(off.objective_params))) > 1e-4


@pytest.mark.parametrize("name, conditional", [("dnn", False), ("fse_phase0", False), ("fse_phase1", False),
                                               ("fse_phase1", True)])
def test_adversarial_objectives_train_every_model_and_resume_exactly(name, conditional, tmp_path):
    tr, va, tg = detector_arrays(1024, 0), detector_arrays(256, 1), detector_arrays(512, 5, shift=2.0)
    dm = ArrayDataModule(tr, va, target=tg)
    params = {"hidden": (32, 16)} if name == "dnn" else {"hidden_dim": 16, "head_hidden": (16,)}
    # no ramp: the ramp follows max_epochs, which a fit stopped after one epoch here sets to 1
    whole = _fit(name, DANN(weight=0.5, ramp=False, conditional=conditional), dm, params=params, max_epochs=2)
    half = _fit(name, DANN(weight=0.5, ramp=False, conditional=conditional), dm, params=params, max_epochs=1)
    half.save_checkpoint(tmp_path / "ck")
    assert (tmp_path / "ck" / "objective.eqx").is_file()
    model, state = build_model(name, DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), **params)
    resumed = _trainer(DANN(weight=0.5, ramp=False, conditional=conditional), max_epochs=2)
    resumed.fit(model, dm, state=state, ckpt_path=tmp_path / "ck")
    for a, b in zip(_leaves((whole.params, whole.objective_params)), _leaves((resumed.params, resumed.objective_params))):
        np.testing.assert_array_equal(a, b)


def test_cdans_domain_classifier_sees_the_prediction_times_the_representation():
    logits, rep = jnp.asarray([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]]), jnp.asarray([[1.0, -2.0], [3.0, 0.5]])
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    expected = np.stack([np.outer(probs[i], np.asarray(rep[i])).ravel() for i in range(2)])
    np.testing.assert_allclose(conditioned(logits, rep), expected, rtol=1e-6)
    # the prediction conditions, it is not trained through the domain loss (Long et al.'s detach)
    assert not np.asarray(jax.grad(lambda lg: conditioned(lg, rep).sum())(logits)).any()
    model, state = build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(32, 16))
    assert DANN(conditional=True).init(model, state, key=jax.random.PRNGKey(1)).in_size == 4 * 16
    assert DANN().init(model, state, key=jax.random.PRNGKey(1)).in_size == 16


def test_an_objective_needs_its_target_and_the_representation():
    tr, va = detector_arrays(512, 0), detector_arrays(256, 1)
    with pytest.raises(pidx.TrainingError, match="unlabelled target sample"):
        _fit("simplenn", DANN(), ArrayDataModule(tr, va))


def test_reweighting_recovers_the_density_ratio_of_a_constructed_shift():
    """Source inputs N(0, 1), target N(0.5, 1) in one feature: the ratio is exp(0.5 x − 0.125)."""
    rng = np.random.default_rng(1)
    n, f = 40_000, DEFAULT_LAYOUT.num_features
    xs, xt = rng.normal(size=(n, f)).astype(np.float32), rng.normal(size=(n, f)).astype(np.float32)
    xt[:, 0] += 0.5
    mask = np.ones((n, DEFAULT_LAYOUT.num_groups), bool)
    found = domain_weights((xs, mask), (xt, mask), seed=0)
    truth = np.exp(0.5 * xs[:, 0] - 0.125)
    bulk = np.abs(xs[:, 0]) < 2
    assert np.corrcoef(found.weights[bulk], truth[bulk])[0, 1] > 0.9
    assert np.median(np.abs(found.weights[bulk] / truth[bulk] - 1)) < 0.15
    # the weighted source has the target's mean; unweighted it has not
    assert abs(np.average(xs[:, 0], weights=found.weights) - 0.5) < 0.05 < abs(xs[:, 0].mean() - 0.5)
    assert 0.55 < found.auc < 0.7 and 0.5 < found.effective_fraction < 1.0
    same = domain_weights((xs, mask), (rng.normal(size=(n, f)).astype(np.float32), mask), seed=0)
    assert abs(same.auc - 0.5) < 0.02 and np.std(same.weights) < 0.2


def test_the_data_scenarios_oracle_is_calibrated_and_mc_is_unchanged():
    from pidx.simulation import DATA_SCENARIO, simulate

    data = simulate(n_tracks=60_000, seed=3, **DATA_SCENARIO)
    probs = data[[f"oracle_prob_{c}" for c in ("pi", "ka", "pr", "el")]].to_numpy()
    pdg = np.abs(data["mcPdg"].to_numpy())
    y = np.select([pdg == 211, pdg == 321, pdg == 2212, pdg == 11], [0, 1, 2, 3], -1)
    for k in range(4):  # each class's mean posterior is its frequency, within 4 standard errors
        p = probs[:, k]
        hit = (y == k).astype(float)
        assert abs(p.mean() - hit.mean()) < 4 * np.sqrt(np.mean(p * (1 - p)) / len(p))
        for lo, hi in ((0.1, 0.5), (0.5, 0.9)):  # and within bins of the posterior
            sel = (p > lo) & (p < hi)
            assert abs(p[sel].mean() - hit[sel].mean()) < 4 * np.sqrt(np.mean(p[sel] * (1 - p[sel])) / sel.sum()) + 0.01
    tpc = (y == 0) & data["hasTPC"].to_numpy().astype(bool)
    assert abs(data["tpcNSigmaPi"].to_numpy()[tpc].mean() - DATA_SCENARIO["tpc_nsigma_shift"]) < 0.03
    mc = simulate(n_tracks=2000, seed=3)
    again = simulate(n_tracks=2000, seed=3, tpc_nsigma_shift=0.0, tpc_nsigma_width=1.0, tof_time_offset_ns=0.0,
                     tof_nsigma_width=1.0)
    pd.testing.assert_frame_equal(mc, again)


def test_the_believed_oracle_is_the_mc_posterior_of_data_tracks():
    """`simulate(believed=MC)` gives the posterior the MC's physics assigns to the tracks: on MC tracks the
    vector oracle itself; on data it loses to the data's own oracle, whose NLL is the lowest any model
    of those inputs can reach; anything but response and abundances may not differ."""
    from pidx.simulation import DATA_SCENARIO, SimulatorConfig, simulate

    mc = SimulatorConfig(n_tracks=20_000, seed=5)
    tracks, truth = simulate(mc, believed=mc)
    vector = tracks[[f"vector_oracle_prob_{c}" for c in ("pi", "ka", "pr", "el")]].to_numpy()
    np.testing.assert_allclose(truth["believed_vector_oracle"], vector, atol=1e-6)
    pd.testing.assert_frame_equal(tracks, simulate(mc))  # the tracks themselves are untouched
    data, truth = simulate(mc, believed=mc, **DATA_SCENARIO)
    y = pidx.data.schema.pdg_to_class(data["mcPdg"].to_numpy())
    own = data[[f"vector_oracle_prob_{c}" for c in ("pi", "ka", "pr", "el")]].to_numpy()
    nll = lambda p: -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))  # noqa: E731
    assert nll(truth["believed_vector_oracle"]) > nll(own) + 0.005
    with pytest.raises(ValueError, match="tpc_resolution"):
        simulate(mc, believed=SimulatorConfig(tpc_resolution=(0.07,) * 4))


@pytest.fixture(scope="module")
def shift_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shift")
    assert main(["simulate", "--n", "20000", "--seed", "1", "--out", str(d / "mc.parquet")]) == 0
    assert main(["simulate", "--n", "8000", "--seed", "2", "--scenario", "data", "--out", str(d / "data.parquet")]) == 0
    return d


SMALL_REPORTED = ["--set", "trainer.max_epochs=2", "--set", "trainer.batch_size=256", "--set", "evaluation.baselines=[]",
                  "--set", "model.hidden=[32,16]", "--quiet"]
SMALL = [*SMALL_REPORTED, "--set", "evaluation.report=false"]


def test_a_users_objective_trains_through_pidx_fit_by_import_path(shift_files, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "recipes/simplenn_mid.yaml", "--set", f"data.source={shift_files / 'mc.parquet'}",
                 "--set", "loss.name=custom_objectives:LabelSmoothing", "--set", "loss.params={smoothing: 0.2}",
                 *SMALL, "--output", str(out)]) == 0
    history = pd.read_csv(out / "history.csv")
    assert "train/smoothed_nll" in history and np.isfinite(history["train/smoothed_nll"]).all()
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] > 0.5


@pytest.mark.parametrize("method", ["dann", "cdan", "reweight"])
def test_adaptation_through_pidx_fit_and_export_leaves_the_objective_out(method, shift_files, tmp_path):
    out = tmp_path / method
    assert main(["fit", "recipes/simplenn_mid.yaml", "--set", f"data.source={shift_files / 'mc.parquet'}",
                 "--set", f"data.target={shift_files / 'data.parquet'}", "--set", f"loss.adaptation={method}",
                 *SMALL, "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["adaptation"]["method"] == method and metrics["data"]["target"]["n_tracks"] > 1000
    if method == "reweight":
        assert 0.5 < metrics["adaptation"]["domain_auc"] < 1.0 and metrics["adaptation"]["effective_fraction"] < 1.0
    assert main(["export", str(out), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 0
    pred = tmp_path / "p.parquet"
    assert main(["predict", str(out), "--input", str(shift_files / "data.parquet"), "--output", str(pred)]) == 0
    assert len(pd.read_parquet(pred)) == 8000


@pytest.mark.parametrize("sets, message", [
    (["--set", "loss.name=no_such_module:Objective"], "no_such_module"),
    (["--set", "loss.adaptation=dann"], "data.target"),
    (["--set", "loss.name=cross_entropy", "--set", "loss.params={a: 1}"], "loss.params"),
])
def test_bad_objectives_are_one_line_errors(sets, message, capsys):
    assert main(["fit", "recipes/simplenn_mid.yaml", *sets, "--print-config"]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_target_in_another_layout_or_out_of_range_is_a_one_line_error(shift_files, tmp_path, capsys):
    legacy, high = tmp_path / "legacy.parquet", tmp_path / "high.parquet"
    assert main(["simulate", "--n", "2000", "--layout", "legacy", "--out", str(legacy)]) == 0
    frame = pd.read_parquet(shift_files / "data.parquet")
    frame[frame["p"] > 2.0].to_parquet(high)
    capsys.readouterr()
    for target, message in ((legacy, "legacy layout"), (high, "momentum range")):
        assert main(["fit", "recipes/simplenn_mid.yaml", "--set", f"data.source={shift_files / 'mc.parquet'}",
                     "--set", f"data.target={target}", "--set", "loss.adaptation=dann", *SMALL,
                     "--output", str(tmp_path / target.stem)]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and str(target.name) in err and len(err.splitlines()) == 1


def test_pidx_shift_ranks_the_mismodelled_group_first(shift_files, tmp_path, capsys):
    """Data whose only difference from the MC is a late TOF clock: TOF tells them apart, nothing else does."""
    from pidx.data.io import write_table
    from pidx.data.layouts import O2_FILE_BRANCHES
    from pidx.simulation import simulate

    late = tmp_path / "late_tof.parquet"
    write_table(simulate(n_tracks=20_000, seed=9, tof_time_offset_ns=0.15), late, root_types=O2_FILE_BRANCHES)
    run = tmp_path / "mc_run"
    assert main(["fit", "recipes/simplenn_mid.yaml", "--set", f"data.source={shift_files / 'mc.parquet'}",
                 *SMALL, "--output", str(run)]) == 0
    out = tmp_path / "shift.json"
    assert main(["shift", str(run), "--input", str(late), "--output", str(out)]) == 0
    shift = json.loads(out.read_text())
    groups = {g["group"]: g["auc"] for g in shift["groups"]}
    assert shift["groups"][0]["group"] == "tof" and groups["tof"] > 0.6
    assert all(abs(auc - 0.5) < 0.05 for name, auc in groups.items() if name != "tof")
    assert shift["inputs"][0]["group"] == "tof" and "| tof |" in capsys.readouterr().err
    assert abs(sum(shift["abundances"]["data"].values()) - 1) < 1e-6


def test_a_fit_with_a_target_reports_the_shift(shift_files, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "recipes/simplenn_mid.yaml", "--set", f"data.source={shift_files / 'mc.parquet'}",
                 "--set", f"data.target={shift_files / 'data.parquet'}", *SMALL_REPORTED,
                 "--set", "evaluation.report_max_tracks=2000", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["shift"]["overall_auc"] > 0.5 and len(metrics["shift"]["groups"]) == 7
    text = (out / "report" / "report.md").read_text()
    assert "## MC and data" in text and f"| {metrics['shift']['groups'][0]['group']} |" in text


def test_an_ensembles_dann_member_is_the_single_run_with_its_seed():
    """Each member draws its domain classifier and its target rows from its own seed, as a single run does."""
    from pidx.models import make_ensemble
    from pidx.models.ensemble import member_key

    tr, va, tg = detector_arrays(1024, 0), detector_arrays(256, 1), detector_arrays(512, 5, shift=2.0)
    dm = ArrayDataModule(tr, va, target=tg)
    ens, ens_state = make_ensemble("simplenn", DEFAULT_LAYOUT, seeds=(3, 4), hidden=(32, 16))
    t_ens = _trainer(DANN(weight=0.5), seed=0)
    t_ens.fit(ens, dm, state=ens_state)
    model, state = build_model("simplenn", DEFAULT_LAYOUT, key=member_key(4), hidden=(32, 16))
    t_one = _trainer(DANN(weight=0.5), seed=4)
    t_one.fit(model, dm, state=state)
    member = jax.tree.map(lambda a: a[1], (t_ens.params, t_ens.objective_params))
    for a, b in zip(_leaves(member), _leaves((t_one.params, t_one.objective_params))):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)

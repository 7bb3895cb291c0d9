"""Per-track uncertainty: hand cases, MC dropout, and `pidx predict --uncertainty` on real runs."""

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from pidx import SimpleNN
from pidx.cli import main
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.errors import PidxError
from pidx.evaluation.uncertainty import entropy, mc_dropout_probs, sample_uncertainty

RECIPES = Path(__file__).parent.parent / "recipes"
FAST = ["--set", "data.n_tracks=8000", "--set", "data.momentum_range=full", "--set", "trainer.max_epochs=2",
        "--set", "trainer.batch_size=256", "--set", "evaluation.baselines=[]", "--quiet"]


def test_entropy_and_member_disagreement_by_hand():
    assert entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))
    assert entropy(np.array([1.0, 0, 0, 0])) == 0.0
    samples = np.array([[[1.0, 0, 0, 0]], [[0, 1.0, 0, 0]]])  # two members, one track, opposite answers
    u = sample_uncertainty(samples)
    assert u["entropy"][0] == pytest.approx(np.log(2))
    assert u["mutual_information"][0] == pytest.approx(np.log(2))  # all of it from disagreement
    assert u["disagreement"][0] == 0.5
    agree = sample_uncertainty(np.array([[[0.5, 0.5, 0, 0]]] * 3))
    assert agree["mutual_information"][0] == pytest.approx(0.0, abs=1e-12) and agree["disagreement"][0] == 0


def test_mc_dropout_samples_differ_and_repeat():
    model, state = SimpleNN(DEFAULT_LAYOUT, hidden=(32, 16), dropout=0.5, key=jax.random.PRNGKey(0)), None
    import equinox as eqx

    state = eqx.nn.State(model)
    x = jax.random.normal(jax.random.PRNGKey(1), (300, DEFAULT_LAYOUT.num_features))
    m = np.ones((300, DEFAULT_LAYOUT.num_groups), bool)
    a = mc_dropout_probs(model, state, x, m, samples=8, seed=3, batch_size=128)  # 3 batches, padded tail
    b = mc_dropout_probs(model, state, x, m, samples=8, seed=3, batch_size=128)
    assert a.shape == (8, 300, 4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[0] - a[1]).max() > 1e-3
    with pytest.raises(PidxError, match="no dropout"):
        mc_dropout_probs(SimpleNN(DEFAULT_LAYOUT, dropout=0.0, key=jax.random.PRNGKey(0)), state, x, m, samples=4)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tracks.parquet"
    assert main(["simulate", "--n", "3000", "--seed", "5", "--out", str(path)]) == 0
    return path


def _fit(tmp_path_factory, *extra):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["fit", str(RECIPES / "simplenn_full.yaml"), *FAST, *extra, "--output", str(out)]) == 0
    return out


def test_predict_uncertainty_for_an_ensemble(tmp_path_factory, tracks, tmp_path):
    run = _fit(tmp_path_factory, "--set", "trainer.ensemble=3", "--set", "evaluation.report=true",
               "--set", "loss.name=cross_entropy", "--set", "trainer.max_epochs=4",
               "--set", "evaluation.report_max_tracks=1000")
    out = tmp_path / "u.parquet"
    assert main(["predict", str(run), "--input", str(tracks), "--output", str(out), "--uncertainty"]) == 0
    df = pd.read_parquet(out)
    probs = df[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
    np.testing.assert_allclose(df["entropy"], entropy(probs), atol=1e-5)
    assert (df["mutual_information"] >= 0).all() and (df["mutual_information"] <= df["entropy"] + 1e-6).all()
    assert np.allclose(df["disagreement"] * 3, np.round(df["disagreement"] * 3), atol=1e-5) and df["disagreement"].max() > 0
    # wrong predictions are less certain than right ones (the point of the number)
    truth = pd.read_parquet(tracks)["mcPdg"].abs().map({211: "pi", 321: "ka", 2212: "pr", 11: "el"})
    wrong = df["pred"] != truth
    assert df["entropy"][wrong].mean() > df["entropy"][~wrong].mean()
    assert main(["predict", str(run), "--input", str(tracks), "--output", str(out), "--mc-dropout", "4"]) == 2
    # calibration in metrics.json and in the report
    cal = json.loads((run / "metrics.json").read_text())["calibration"]
    assert 0 <= cal["test"]["ece"] <= 1 and cal["method"] == "bias_temperature"
    assert cal["test"]["nll"] <= cal["test_raw"]["nll"]  # the posteriors, fitted on validation, beat the raw output
    assert (run / "report" / "reliability.png").stat().st_size > 10_000
    assert "## Calibration" in (run / "report" / "report.md").read_text()


def test_predict_mc_dropout_for_a_single_model(tmp_path_factory, tracks, tmp_path):
    run = _fit(tmp_path_factory, "--set", "evaluation.report=false")
    out = tmp_path / "mc.parquet"
    assert main(["predict", str(run), "--input", str(tracks), "--output", str(out), "--mc-dropout", "10",
                 "--seed", "1"]) == 0
    df = pd.read_parquet(out)
    assert {"entropy", "mc_entropy", "mutual_information", "disagreement"} <= set(df.columns)
    assert df["mutual_information"].max() > 0 and (df["mutual_information"] <= df["mc_entropy"] + 1e-6).all()
    plain = tmp_path / "plain.parquet"
    assert main(["predict", str(run), "--input", str(tracks), "--output", str(plain)]) == 0
    np.testing.assert_array_equal(pd.read_parquet(plain)["prob_pi"], df["prob_pi"])  # prob_* stay deterministic
    assert "entropy" not in pd.read_parquet(plain).columns

import numpy as np
import pandas as pd
import pytest

from pidx.data import TrackDataModule, validate_tracks
from pidx.simulation import SimulatorConfig
from pidx.evaluation.baselines import add_oracle_gaps, bayes_pid, nsigma, nsigma_scores, run_baselines
from pidx.training import compute_class_weights


def table_from(rows):
    base = {c: 0.0 for c in ("pt", "eta", "phi", "dca_xy", "dca_z", "tpc_signal", "tof_beta")}
    df = pd.DataFrame([{**base, **r} for r in rows])
    for det in ("tpc", "tof"):
        for c in ("pi", "ka", "pr", "el"):
            df[f"{det}_nsigma_{c}"] = df.get(f"{det}_nsigma_{c}", np.nan)
    for c in ("pi", "ka", "pr", "el"):
        df[f"bayes_prob_{c}"] = df.get(f"bayes_prob_{c}", np.nan)
    df["pt"] = 1.0
    return validate_tracks(df.fillna({"tof_beta": 1.0, "tpc_signal": 50.0}), require_label=True)


def test_nsigma_picks_closest_within_three_sigma_of_every_detector():
    rows = [
        # TPC alone: kaon closest
        dict(mc_pdg=321, has_tpc=1, has_tof=0, tpc_nsigma_pi=2.5, tpc_nsigma_ka=0.5, tpc_nsigma_pr=-4, tpc_nsigma_el=6),
        # TPC says pion or kaon, TOF excludes the pion (|n| > 3): kaon although pion is closer in TPC
        dict(mc_pdg=321, has_tpc=1, has_tof=1, tpc_nsigma_pi=0.1, tpc_nsigma_ka=1.0, tpc_nsigma_pr=-5, tpc_nsigma_el=7,
             tof_nsigma_pi=4.0, tof_nsigma_ka=0.2, tof_nsigma_pr=-8, tof_nsigma_el=9),
        # nothing within 3σ: unidentified
        dict(mc_pdg=2212, has_tpc=1, has_tof=0, tpc_nsigma_pi=9, tpc_nsigma_ka=6, tpc_nsigma_pr=3.5, tpc_nsigma_el=12),
        # no detector at all: unidentified
        dict(mc_pdg=11, has_tpc=0, has_tof=0),
    ]
    for r in rows[1:2]:
        r["tof_beta"] = 0.9
    pred, probs = nsigma_scores(table_from(rows))
    assert pred.tolist() == [1, 1, -1, -1]
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(probs[3], 0.25)


def test_bayes_pid_argmax_and_fallback():
    rows = [dict(mc_pdg=2212, has_tpc=1, has_tof=0, tpc_nsigma_pi=9, tpc_nsigma_ka=6, tpc_nsigma_pr=0.3, tpc_nsigma_el=9,
                 bayes_prob_pi=0.1, bayes_prob_ka=0.2, bayes_prob_pr=0.6, bayes_prob_el=0.1),
            dict(mc_pdg=211, has_tpc=1, has_tof=0, tpc_nsigma_pi=0.2, tpc_nsigma_ka=4, tpc_nsigma_pr=-6, tpc_nsigma_el=7,
                 bayes_prob_pi=0.25, bayes_prob_ka=0.25, bayes_prob_pr=0.25, bayes_prob_el=0.25)]  # missing -> n-sigma
    t = table_from(rows)
    metrics, outputs = run_baselines({"train": t, "test": t}, ["bayes_pid"], class_weights=np.ones(4))
    assert outputs["bayes_pid"]["pred"].tolist() == [2, 0]
    b = metrics["bayes_pid"]
    assert b["accuracy"] == 1.0 and b["bayes_available_fraction"] == 0.5
    assert b["with_bayes"]["n_tracks"] == 1 and b["without_bayes_nsigma_fallback"]["accuracy"] == 1.0


@pytest.fixture(scope="module")
def mid():
    return TrackDataModule(simulator=SimulatorConfig(n_tracks=60_000, seed=3, tof_scenario="seed_scarce"),
                           momentum_range="mid").setup()


def test_all_baselines_on_simulated_tracks(mid):
    metrics, outputs = run_baselines(mid.tables, class_weights=np.ones(4), gbdt_max_iter=60)
    assert set(metrics) == {"bayes_pid", "nsigma", "gbdt", "oracle", "vector_oracle"}
    acc = {k: v["accuracy"] for k, v in metrics.items()}
    # the oracle is the ceiling; the vector oracle (less information) and an unweighted GBDT below it;
    # the classic methods well below
    assert acc["oracle"] > acc["vector_oracle"] >= acc["gbdt"] > acc["bayes_pid"] and acc["oracle"] > acc["nsigma"]
    assert metrics["oracle"]["nll"] < metrics["vector_oracle"]["nll"] < metrics["gbdt"]["nll"]
    assert metrics["gbdt"]["fit_s"] > 0 and metrics["nsigma"]["unidentified_fraction"] > 0
    w = metrics["oracle"]["weighted_decision"]  # argmax P/π: trades accuracy for balanced accuracy
    assert w["balanced_accuracy"] > metrics["oracle"]["balanced_accuracy"] and w["accuracy"] < acc["oracle"]
    assert metrics["oracle"]["nll"] < metrics["gbdt"]["nll"] < metrics["bayes_pid"]["nll"]
    model = {"accuracy": acc["oracle"] - 0.05, "balanced_accuracy": 0.5}
    add_oracle_gaps(model, metrics)
    assert model["gap_to_oracle_pp"] == pytest.approx(5.0) and metrics["oracle"]["gap_to_oracle_pp"] == 0
    assert model["gap_to_vector_oracle_pp"] == pytest.approx(100 * (acc["vector_oracle"] - model["accuracy"]))
    assert metrics["vector_oracle"]["gap_to_vector_oracle_pp"] == 0 and metrics["vector_oracle"]["gap_to_oracle_pp"] > 0


def balanced(dm):
    return compute_class_weights("balanced", dm.class_counts)


def test_oracle_weighted_decision_maximises_balanced_accuracy(mid):
    metrics, _ = run_baselines(mid.tables, ["oracle"], class_weights=balanced(mid))
    o = metrics["oracle"]
    assert o["weighted_decision"]["balanced_accuracy"] > o["balanced_accuracy"]
    assert o["weighted_decision"]["accuracy"] < o["accuracy"]


def test_tree_probabilities_have_the_class_weights_divided_out(mid):
    """A GBDT trained with balanced weights outputs ∝ w·P; pidx divides w out: posteriors again."""
    metrics, outputs = run_baselines(mid.tables, ["gbdt", "oracle"], class_weights=balanced(mid), gbdt_max_iter=60)
    test = mid.tables["test"]
    freq = np.bincount(test.labels, minlength=4) / len(test)
    probs = outputs["gbdt"]["probs"]
    assert np.abs(probs.mean(0) - freq).max() < 0.04  # near the sample's abundances (60 iterations: not exact)
    assert metrics["gbdt"]["accuracy"] > metrics["gbdt"]["weighted_decision"]["accuracy"]
    weighted = probs * balanced(mid) / (probs * balanced(mid)).sum(1, keepdims=True)  # what the trees output
    assert np.abs(weighted.mean(0) - freq).max() > 0.1


def test_no_oracle_for_files_without_it(mid):
    tables = {k: v.subset(np.arange(len(v))) for k, v in mid.tables.items()}
    for t in tables.values():
        t.frame = t.frame.drop(columns=[c for c in t.frame if c.startswith("oracle_")])
    metrics, _ = run_baselines(tables, ["nsigma", "oracle"], class_weights=np.ones(4))
    assert set(metrics) == {"nsigma"}


def test_xgboost_and_lightgbm_on_the_same_split(mid):
    """The field's tree libraries: trained on train, early-stopped on val, measured on test, with weights."""
    metrics, outputs = run_baselines(mid.tables, ["xgboost", "lightgbm", "gbdt", "bayes_pid"],
                                     class_weights=np.ones(4), gbdt_max_iter=60)
    for name in ("xgboost", "lightgbm"):
        m = metrics[name]
        assert m["n_tracks"] == len(mid.tables["test"]) and outputs[name]["probs"].shape == (m["n_tracks"], 4)
        np.testing.assert_allclose(outputs[name]["probs"].sum(1), 1.0, atol=1e-6)
        assert 1 <= m["iterations"] <= 500 and m["fit_s"] > 0
        assert m["accuracy"] > metrics["bayes_pid"]["accuracy"]  # the trees learn more than the classic method
        assert abs(m["accuracy"] - metrics["gbdt"]["accuracy"]) < 0.02  # and about as much as HistGBDT
    again, _ = run_baselines(mid.tables, ["lightgbm"], class_weights=np.ones(4))
    assert again["lightgbm"]["accuracy"] == metrics["lightgbm"]["accuracy"]  # deterministic per seed
    # class weights reach the trees (another fit), and are divided out again (posteriors, similar accuracy)
    weighted, weighted_out = run_baselines(mid.tables, ["lightgbm"], class_weights=balanced(mid))
    assert np.abs(weighted_out["lightgbm"]["probs"] - outputs["lightgbm"]["probs"]).max() > 0.05
    assert abs(weighted["lightgbm"]["accuracy"] - metrics["lightgbm"]["accuracy"]) < 0.015


def test_missing_tree_package_names_the_extra(mid, monkeypatch):
    import sys

    from pidx.errors import PidxError

    monkeypatch.setitem(sys.modules, "xgboost", None)  # as if not installed: importing it fails
    with pytest.raises(PidxError, match=r"xgboost baseline needs the 'xgboost' package: pip install 'pidx\[trees\]'"):
        run_baselines(mid.tables, ["xgboost"], class_weights=np.ones(4))


def test_o2_bayes_pid_is_the_normalised_nsigma_likelihood(mid):
    # why the two rows share AUC and NLL on the simulator: flat priors × exp(−χ²/2) (docs/evaluation.md)
    test = mid.tables["test"]
    have = test.frame["bayes_available"].to_numpy() == 1
    bayes, ns = bayes_pid(test)["probs"], nsigma(test)["probs"]
    assert have.mean() > 0.8
    assert np.allclose(bayes[have], ns[have], atol=1e-4)
    assert (bayes_pid(test)["pred"] != nsigma(test)["pred"]).any()  # n-sigma leaves some unidentified

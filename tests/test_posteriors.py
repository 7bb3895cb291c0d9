"""Posteriors whatever the loss: class weights undone, recalibration recovered, abundances
re-weighted and estimated by EM, working points chosen on validation and reported on test."""

import numpy as np
import pytest

from pidx.data.schema import CLASS_NAMES
from pidx.simulation import SimulatorConfig, simulate
from pidx.evaluation.calibration import fit_posterior_map, negative_log_likelihood
from pidx.evaluation.priors import estimate_priors
from pidx.evaluation.working_points import (
    WorkingPoint, choose_threshold, efficiency_at_purity, evaluate_working_point, selection_performance,
)
from pidx.training.posterior import PosteriorMap, abundances, corrected_nll

FRACTIONS_A = (0.69, 0.05, 0.14, 0.12)
FRACTIONS_B = (0.40, 0.25, 0.25, 0.10)


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _oracle_sample(fractions, n, seed):
    df = simulate(SimulatorConfig(n_tracks=n, seed=seed, species_fractions=fractions))
    probs = df[[f"oracle_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)
    pdg = np.abs(df["mcPdg"].to_numpy())
    labels = np.select([pdg == 211, pdg == 321, pdg == 2212, pdg == 11], [0, 1, 2, 3], -1)
    assert (labels >= 0).all()
    probs = np.clip(probs, 1e-300, None)  # exact zeros (impossible species) would make log() warn
    return probs / probs.sum(1, keepdims=True), labels


@pytest.fixture(scope="module")
def oracle_a():
    return _oracle_sample(FRACTIONS_A, 60_000, 11)


def test_class_weights_are_undone_exactly(oracle_a):
    posterior, _ = oracle_a
    w = np.array([0.4, 4.0, 1.2, 2.9])
    weighted = posterior * w / (posterior * w).sum(1, keepdims=True)  # what weighted cross-entropy learns
    np.testing.assert_allclose(PosteriorMap(class_weights=tuple(w))(weighted), posterior, atol=1e-9)
    # the argmax moves with the weights (that is why the raw output is not a posterior)
    assert np.mean(weighted.argmax(1) != posterior.argmax(1)) > 0.01


def test_fit_recovers_a_known_distortion(oracle_a):
    """Raw output = softmax(a·log(w·P) + b): the fit finds T = a and the biases that undo b and w."""
    posterior, labels = oracle_a
    w, a, b = np.array([0.4, 4.0, 1.2, 2.9]), 0.45, np.array([0.0, 0.7, -0.4, 0.3])
    raw = _softmax(a * np.log(posterior * w) + b)
    half = len(labels) // 2
    fitted = fit_posterior_map(raw[:half], labels[:half], class_weights=w, train_priors=np.full(4, 0.25))
    assert fitted.temperature == pytest.approx(a, rel=0.05)
    # softmax(z/T + c) = P needs c = −(b − (1 − a)·log w)/a up to a constant
    want = -(b - (1 - a) * np.log(w)) / a
    np.testing.assert_allclose(np.asarray(fitted.bias) - fitted.bias[0], want - want[0], atol=0.1)
    # on the other half: the NLL of the oracle itself, and far below the distorted output's
    nll = negative_log_likelihood(fitted(raw[half:]), labels[half:])
    assert nll == pytest.approx(negative_log_likelihood(posterior[half:], labels[half:]), abs=0.003)
    assert nll < negative_log_likelihood(raw[half:], labels[half:]) - 0.05
    # temperature only cannot undo a bias; weights only cannot undo a temperature
    for method in ("temperature", "weights_only"):
        other = fit_posterior_map(raw[:half], labels[:half], class_weights=w, train_priors=np.full(4, 0.25),
                                  method=method)
        assert negative_log_likelihood(other(raw[half:]), labels[half:]) > nll + 0.005


def test_corrected_nll_does_not_move_with_class_weights(oracle_a):
    posterior, labels = oracle_a
    w = np.array([0.4, 4.0, 1.2, 2.9])
    weighted = posterior * w / (posterior * w).sum(1, keepdims=True)
    assert corrected_nll(weighted, labels, w) == pytest.approx(corrected_nll(posterior, labels, np.ones(4)))


def test_a_species_absent_from_training_has_nothing_to_undo(oracle_a):
    """Balanced weights give an absent species weight 0: counted as 1, so validation does not fail."""
    posterior, labels = oracle_a
    w = np.array([0.4, 4.0, 1.2, 0.0])
    assert PosteriorMap.undoing(w).class_weights == (0.4, 4.0, 1.2, 1.0)
    assert corrected_nll(posterior, labels, w) == pytest.approx(corrected_nll(posterior, labels, [0.4, 4.0, 1.2, 1.0]))
    with pytest.raises(ValueError, match="> 0"):
        PosteriorMap(class_weights=tuple(w))


def test_priors_reweight_to_another_sample(oracle_a):
    """Re-weighting sample A's posteriors to B's abundances gives B's own posteriors."""
    posterior_a, _ = oracle_a
    pa, pb = np.array(FRACTIONS_A), np.array(FRACTIONS_B)
    m = PosteriorMap(train_priors=tuple(pa))
    np.testing.assert_allclose(m.with_priors(tuple(pb))(posterior_a),
                               _softmax(np.log(posterior_a) + np.log(pb / pa)), atol=1e-9)
    np.testing.assert_allclose(m.with_priors(tuple(pa))(posterior_a), posterior_a, atol=1e-9)
    assert m.with_priors(dict(zip(CLASS_NAMES, pb))).priors == pytest.approx(pb)


@pytest.mark.parametrize("bad, match", [({"pi": 0.5, "ka": 0.5}, "missing"), ((0.5, 0.5, 0.5, 0.5), "sum to 1"),
                                        ({"pi": 0.7, "ka": 0.1, "pr": 0.1, "mu": 0.1}, "unknown"),
                                        ((1.0, 0.0, 0.0, 0.0), "> 0")])
def test_bad_abundances_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        abundances(bad)


def test_em_estimates_the_abundances_of_an_unlabelled_sample(oracle_a):
    """Sample B has other abundances; its posteriors under A's (the model's view) → EM → B's truth."""
    posterior_b, labels_b = _oracle_sample(FRACTIONS_B, 60_000, 12)
    pa, pb = np.array(FRACTIONS_A), np.array(FRACTIONS_B)
    as_model_sees_it = _softmax(np.log(posterior_b) + np.log(pa / pb))
    fit = estimate_priors(as_model_sees_it, pa)
    truth = np.bincount(labels_b, minlength=4) / len(labels_b)
    assert fit["converged"]
    assert np.max(np.abs(np.asarray(fit["priors"]) - truth)) < 0.005
    assert np.max(np.abs(as_model_sees_it.mean(0) - truth)) > 0.03  # the naive average is far off


def test_working_point_parse_and_errors():
    wp = WorkingPoint.parse("ka:purity=0.95")
    assert (wp.species, wp.kind, wp.target, wp.column) == ("ka", "purity", 0.95, "select_ka_purity_0.95")
    for bad in ("kaon:purity=0.9", "ka:purity=1.5", "ka:recall=0.9", "ka=0.9"):
        with pytest.raises(ValueError, match="working point"):
            WorkingPoint.parse(bad)


def test_threshold_meets_the_target_with_the_best_other_figure():
    scores = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4])
    truth = np.array([1, 1, 0, 1, 0, 1, 0], bool)
    # purity of score >= t: 1, 2/3 (tie group), 3/4, 3/5, 4/6, 4/7
    got = choose_threshold(scores, truth, WorkingPoint("pi", "purity", 0.7))
    assert got["threshold"] == 0.7 and got["purity"] == pytest.approx(0.75) and got["efficiency"] == 0.75
    got = choose_threshold(scores, truth, WorkingPoint("pi", "efficiency", 0.9))
    assert got["threshold"] == 0.5 and got["efficiency"] == 1.0
    assert not choose_threshold(scores, ~truth, WorkingPoint("pi", "purity", 0.99))["reached"]
    assert efficiency_at_purity(scores, truth, 0.7) == 0.75


def test_working_point_chosen_on_validation_reported_on_test(oracle_a):
    posterior, labels = oracle_a
    half = len(labels) // 2
    p = np.random.default_rng(0).uniform(0.5, 3.0, len(labels) - half)
    res = evaluate_working_point(WorkingPoint("pr", "purity", 0.95), posterior[:half], labels[:half],
                                 posterior[half:], labels[half:], p)
    sel = posterior[half:, 2] >= res["threshold"]
    direct = selection_performance(sel, labels[half:] == 2)
    assert res["validation"]["purity"] >= 0.95 and res["test"]["purity"] == pytest.approx(direct["purity"])
    assert abs(res["test"]["purity"] - 0.95) < 0.02  # a new sample of the same kind: close to the target
    per = res["test"]["per_bin"]
    assert sum(per["selected"]) == direct["selected"] and len(per["efficiency"]) == len(per["bins"]) - 1
    # the threshold is the validation split's: choosing it on the test split gives another one
    on_test = choose_threshold(posterior[half:, 2], labels[half:] == 2, WorkingPoint("pr", "purity", 0.95))
    assert on_test["threshold"] != res["threshold"]


def test_weighted_working_point_measures_another_abundance(oracle_a):
    """Weights π'/π make the purity that of a sample with abundances π'."""
    posterior, labels = oracle_a
    pa, pb = np.array(FRACTIONS_A), np.array(FRACTIONS_B)
    reweighted = _softmax(np.log(posterior) + np.log(pb / pa))
    posterior_b, labels_b = _oracle_sample(FRACTIONS_B, 60_000, 13)
    t = 0.8
    weighted = selection_performance(reweighted[:, 1] >= t, labels == 1, weights=(pb / pa)[labels])
    direct = selection_performance(posterior_b[:, 1] >= t, labels_b == 1)
    assert weighted["purity"] == pytest.approx(direct["purity"], abs=0.02)
    assert abs(selection_performance(reweighted[:, 1] >= t, labels == 1)["purity"] - direct["purity"]) > 0.05

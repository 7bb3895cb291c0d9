"""Calibration metrics against hand-computed cases; temperature scaling recovers a known temperature."""

import numpy as np
import pytest

from pidx.errors import DataError
from pidx.evaluation.calibration import (
    apply_temperature, calibration_summary, expected_calibration_error, fit_temperature, negative_log_likelihood,
    reliability,
)

# Five tracks; confidences 0.9, 0.6, 0.7, 0.25, 0.85 (see the bin arithmetic in each test).
PROBS = np.array([[0.90, 0.10, 0.00, 0.00],   # label 0: right
                  [0.60, 0.40, 0.00, 0.00],   # label 1: wrong
                  [0.30, 0.70, 0.00, 0.00],   # label 1: right
                  [0.25, 0.25, 0.25, 0.25],   # label 2: wrong (argmax 0)
                  [0.10, 0.85, 0.05, 0.00]])  # label 1: right
LABELS = np.array([0, 1, 1, 2, 1])


def test_ece_by_hand():
    # 5 bins: (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]
    # bin 1: {0.25} acc 0 → 0.25;  bin 2: {0.6} acc 0 → 0.6;  bin 3: {0.7} acc 1 → 0.3
    # bin 4: {0.9, 0.85} acc 1, mean conf 0.875 → 2 × 0.125 = 0.25;  ECE = (0.25+0.6+0.3+0.25)/5
    assert expected_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(1.4 / 5)


def test_classwise_reliability_by_hand():
    rel = reliability(PROBS, LABELS, n_bins=5)["pi"]
    # p_pi = .9 .6 .3 .25 .1, only track 0 is a pion; bins: .1→0, .3/.25→1, .6→2, .9→4
    assert rel["count"] == [1, 2, 1, 0, 1]
    np.testing.assert_allclose(rel["confidence"], [0.1, 0.275, 0.6, np.nan, 0.9])
    np.testing.assert_allclose(rel["frequency"], [0.0, 0.0, 0.0, np.nan, 1.0])
    assert rel["ece"] == pytest.approx((0.1 + 2 * 0.275 + 0.6 + 0.1) / 5)


def test_perfectly_calibrated_and_nll():
    probs = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0
    assert negative_log_likelihood(PROBS[:1], LABELS[:1]) == pytest.approx(-np.log(0.9))
    summary = calibration_summary(PROBS, LABELS, n_bins=5)
    assert summary["ece"] == pytest.approx(0.28) and set(summary["classwise_ece"]) == {"pi", "ka", "pr", "el"}


def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (40_000, 4))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in true])
    overconfident = apply_temperature(true, 1 / 2.5)  # as if logits were 2.5× too large
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    calibrated = apply_temperature(overconfident, t)
    assert expected_calibration_error(calibrated, labels) < 0.3 * expected_calibration_error(overconfident, labels)
    assert negative_log_likelihood(calibrated, labels) < negative_log_likelihood(overconfident, labels)
    np.testing.assert_array_equal(calibrated.argmax(1), overconfident.argmax(1))  # ranking kept


def test_bad_shapes_are_named():
    with pytest.raises(DataError, match=r"\[N, C\]"):
        expected_calibration_error(PROBS, LABELS[:3])

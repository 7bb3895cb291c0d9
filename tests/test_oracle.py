"""The simulator's oracle is the exact Bayes-optimal posterior: nothing beats it, and it is calibrated."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss

from pidx.simulation import simulate
from pidx.data.schema import CLASS_PDG, FEATURE_COLUMNS, ORACLE_COLUMNS


@pytest.fixture(scope="module")
def mid_range():
    df = simulate(layout="legacy", n_tracks=200_000, seed=21, tof_scenario="seed_scarce")
    p = df["pt"] * np.cosh(df["eta"])
    df = df[(p > 0.7) & (p < 1.5)].reset_index(drop=True)
    y = np.array([CLASS_PDG.index(v) for v in np.abs(df["mc_pdg"].to_numpy())])
    return df, y


def calibration_deviation(prob, y, n_bins=10, min_count=200):
    """Largest |mean predicted − observed frequency| in σ of binomial noise, over classes and bins."""
    worst = 0.0
    for k in range(prob.shape[1]):
        bins = np.minimum((prob[:, k] * n_bins).astype(int), n_bins - 1)
        for b in range(n_bins):
            sel = bins == b
            if sel.sum() < min_count:
                continue
            pred, obs = prob[sel, k].mean(), (y[sel] == k).mean()
            sigma = np.sqrt(max(pred * (1 - pred), 1e-4) / sel.sum())
            worst = max(worst, abs(pred - obs) / sigma)
    return worst


def test_oracle_beats_gbdt_trained_on_same_data(mid_range):
    df, y = mid_range
    x = df[list(FEATURE_COLUMNS)].to_numpy()
    n_train = int(0.7 * len(df))
    gbdt = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(x[:n_train], y[:n_train])
    test = slice(n_train, None)
    gbdt_prob = gbdt.predict_proba(x[test])
    oracle = df[list(ORACLE_COLUMNS)].to_numpy(np.float64)[test]
    oracle = oracle / oracle.sum(1, keepdims=True)  # stored as float32
    acc_gbdt = (gbdt_prob.argmax(1) == y[test]).mean()
    acc_oracle = (oracle.argmax(1) == y[test]).mean()
    assert acc_oracle >= acc_gbdt
    assert log_loss(y[test], np.clip(oracle, 1e-12, 1), labels=range(4)) < log_loss(y[test], gbdt_prob, labels=range(4))


def test_oracle_is_calibrated_and_a_distorted_one_is_not(mid_range):
    df, y = mid_range
    oracle = df[list(ORACLE_COLUMNS)].to_numpy(np.float64)
    assert calibration_deviation(oracle, y) < 4.0
    # the check can fail: an over-confident version of the same posterior is caught
    sharp = oracle**2 / (oracle**2).sum(1, keepdims=True)
    assert calibration_deviation(sharp, y) > 10.0

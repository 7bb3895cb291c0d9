"""The vector oracle: the simulator's exact posterior given what the 46-value vector carries."""

import numpy as np
import pytest

from pidx.simulation import detectors as det
from pidx.simulation import physics
from pidx.data.layouts import its_cluster_sizes
from pidx.data.schema import CLASS_PDG, MASSES_GEV, ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS
from pidx.simulation import SimulatorConfig, simulate
from pidx.simulation.o2 import mean_tof_mismatch_fraction, tof_mismatch_fraction

CFG = SimulatorConfig(n_tracks=200_000, seed=11, tof_scenario="seed_scarce")


@pytest.fixture(scope="module")
def tracks():
    df = simulate(CFG)
    labels = np.select([np.abs(df.mcPdg) == pdg for pdg in CLASS_PDG], range(4), -1)
    return df, labels


def _probs(df, columns):
    p = df[list(columns)].to_numpy(np.float64)
    return p / p.sum(1, keepdims=True)


def _its_log_likelihood(df):
    """The ITS cluster-size term, recomputed from the file's branches alone."""
    p, eta = df.p.to_numpy(np.float64), df.eta.to_numpy(np.float64)
    lam = det.its_cluster_mean(p, eta, np.asarray(MASSES_GEV), CFG.its_cluster_size_mip)
    return det.its_log_likelihood(its_cluster_sizes(df.itsClusterSizes.to_numpy()), lam)


def test_vector_oracle_is_the_oracle_without_the_its_cluster_sizes(tracks):
    # with TPC, centrality is known from the vector, so the only difference is the ITS term
    df, _ = tracks
    oracle = _probs(df, ORACLE_COLUMNS)
    # rows where no float32 oracle probability underflowed to 0 (which the ITS term cannot undo)
    rows = df.hasTPC.to_numpy() & (oracle.min(1) > 0)
    assert rows.mean() > 0.5
    logp = np.log(oracle[rows]) - _its_log_likelihood(df)[rows]
    expected = np.exp(logp - logp.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    vector = _probs(df, VECTOR_ORACLE_COLUMNS)
    assert np.allclose(vector[rows], expected, atol=2e-4)
    assert np.abs(vector - _probs(df, ORACLE_COLUMNS)).max() > 0.3  # the cluster sizes do matter


def test_centrality_is_a_function_of_the_vector_when_the_tpc_measured(tracks):
    # the premise behind keeping the oracle's centrality-dependent terms for TPC tracks
    df, _ = tracks
    t = df[df.hasTPC].iloc[:5000]
    p = t.p.to_numpy(np.float64)
    dedx_pi = physics.tpc_expected_signal(p, MASSES_GEV[0])
    sigma_pi = (t.tpcSignal.to_numpy(np.float64) - dedx_pi) / t.tpcNSigmaPi.to_numpy(np.float64)
    res_scale = sigma_pi / (CFG.tpc_resolution[0] * dedx_pi)
    occupancy = (res_scale / np.sqrt(CFG.tpc_clusters_mean / t.tpcNClsFound.to_numpy()) - 1.0) \
        / CFG.centrality_resolution_slope
    ok = np.abs(t.tpcNSigmaPi.to_numpy()) > 0.05  # σ is ill-determined right at the pion line
    assert ok.mean() > 0.5
    assert np.allclose(occupancy[ok], 1.0 - t.centFT0C.to_numpy()[ok] / 100.0, atol=0.02)


def test_centrality_average_of_the_mismatch_fraction_is_exact():
    # the TOF likelihood is linear in f_mis, so averaging f_mis over the uniform centrality is exact
    occupancy = np.linspace(0.0, 1.0, 100_001)
    assert mean_tof_mismatch_fraction(CFG) == pytest.approx(tof_mismatch_fraction(CFG, occupancy).mean(), rel=1e-6)


def test_vector_oracle_is_calibrated_and_below_the_oracle(tracks):
    df, labels = tracks
    oracle, vector = _probs(df, ORACLE_COLUMNS), _probs(df, VECTOR_ORACLE_COLUMNS)
    rows = np.arange(len(labels))
    nll = {k: -np.log(v[rows, labels]).mean() for k, v in (("oracle", oracle), ("vector", vector))}
    acc = {k: (v.argmax(1) == labels).mean() for k, v in (("oracle", oracle), ("vector", vector))}
    assert nll["vector"] > nll["oracle"] + 0.01 and acc["vector"] < acc["oracle"]
    for c in range(4):  # a posterior: the frequency of the species matches the probability, bin by bin
        edges = np.quantile(vector[:, c], np.linspace(0, 1, 11))
        bins = np.clip(np.searchsorted(edges, vector[:, c], side="right") - 1, 0, 9)
        for b in range(10):
            sel = bins == b
            assert abs((labels[sel] == c).mean() - vector[sel, c].mean()) < 0.02
            assert abs(oracle[sel, c].mean() - vector[sel, c].mean()) < 0.02  # E[oracle | vector oracle]


def test_legacy_simulation_has_no_vector_oracle():
    df = simulate(SimulatorConfig(n_tracks=2000, seed=1, layout="legacy"))
    assert set(ORACLE_COLUMNS) <= set(df.columns) and not set(VECTOR_ORACLE_COLUMNS) & set(df.columns)

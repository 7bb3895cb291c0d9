import numpy as np
import pandas as pd

from pidx.simulation import simulate
from pidx.simulation.physics import tof_min_pt
from pidx.data.schema import CLASS_PDG, FEATURE_COLUMNS, ORACLE_COLUMNS


def cls(df):
    return np.array([CLASS_PDG.index(v) for v in np.abs(df["mc_pdg"].to_numpy())])


def test_columns_and_determinism():
    a = simulate(layout="legacy", n_tracks=3000, seed=3)
    b = simulate(layout="legacy", n_tracks=3000, seed=3)
    c = simulate(layout="legacy", n_tracks=3000, seed=4)
    assert list(a.columns) == list(FEATURE_COLUMNS) + ["mc_pdg"] + list(ORACLE_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    assert not a["pt"].equals(c["pt"])


def test_class_fractions_and_acceptance(sim_df):
    frac = np.bincount(cls(sim_df), minlength=4) / len(sim_df)
    np.testing.assert_allclose(frac, [0.69, 0.05, 0.14, 0.12], atol=0.01)
    assert sim_df["eta"].abs().max() <= 0.8 and sim_df["pt"].min() >= 0.1
    assert set(np.sign(sim_df["mc_pdg"]).unique()) == {-1, 1}
    custom = simulate(layout="legacy", n_tracks=5000, species_fractions=(0.25, 0.25, 0.25, 0.25))
    np.testing.assert_allclose(np.bincount(cls(custom)) / 5000, 0.25, atol=0.03)


def test_heavier_species_have_harder_spectra(sim_df):
    c = cls(sim_df)
    mean_pt = [sim_df["pt"][c == k].mean() for k in range(3)]
    assert mean_pt[0] < mean_pt[1] < mean_pt[2]


def test_dedx_ordering_at_low_momentum(sim_df):
    c = cls(sim_df)
    p = sim_df["pt"] * np.cosh(sim_df["eta"])
    sel = (p > 0.3) & (p < 0.5) & (sim_df["has_tpc"] == 1)
    med = [np.median(sim_df["tpc_signal"][sel & (c == k)]) for k in range(3)]
    assert med[2] > med[1] > med[0]
    # electrons sit on the Fermi plateau, well above pions at low momentum
    assert np.median(sim_df["tpc_signal"][sel & (c == 3)]) > 1.5 * med[0]


def test_tof_beta_physical_and_matching_curve():
    df, truth = simulate(layout="legacy", n_tracks=60_000, seed=11, return_truth=True)
    tof = df["has_tof"] == 1
    good = tof & ~truth["tof_mismatch"]
    p = df["pt"] * np.cosh(df["eta"])
    c = cls(df)
    # β ≤ 1 within resolution: slow hadrons (β_π < 0.975 at p < 0.6) essentially never exceed 1
    assert (df["tof_beta"][good & (p < 0.6) & (c != 3)] > 1.0).mean() < 0.002
    # the true species' TOF n-sigma is the time pull: unit width core, few outliers
    pull = df[[f"tof_nsigma_{s}" for s in ("pi", "ka", "pr", "el")]].to_numpy()[np.arange(len(df)), c][good]
    mad_sigma = np.median(np.abs(pull - np.median(pull))) / 0.6745
    assert abs(mad_sigma - 1.0) < 0.06 and (np.abs(pull) > 6).mean() < 0.005
    assert df["tof_beta"][~tof].isna().all()
    assert not tof[df["pt"] < tof_min_pt()].any()  # curling tracks never reach TOF
    bins = [(0.3, 0.4), (0.5, 0.7), (1.2, 2.0), (2.0, 5.0)]
    eff = [tof[(df["pt"] > lo) & (df["pt"] < hi)].mean() for lo, hi in bins]
    assert eff[0] < eff[1] < eff[2] and abs(eff[3] - 0.65) < 0.05
    mis = truth["tof_mismatch"][tof.to_numpy()].mean()
    assert 0.015 < mis < 0.05


def test_seed_scarce_scenario_reproduces_seed_tof():
    df = simulate(layout="legacy", n_tracks=80_000, seed=5, tof_scenario="seed_scarce")
    p = df["pt"] * np.cosh(df["eta"])
    mid = (p > 0.7) & (p < 1.5)
    assert 0.07 < df["has_tof"][mid].mean() < 0.10


def test_secondaries_widen_dca_by_species():
    df, truth = simulate(layout="legacy", n_tracks=40_000, seed=2, return_truth=True)
    c = cls(df)
    sec_frac = [truth["secondary"][c == k].mean() for k in range(4)]
    assert sec_frac[2] > sec_frac[0] and sec_frac[3] > sec_frac[2]
    p = df["pt"] * np.cosh(df["eta"])
    wide = (np.abs(df["dca_xy"]) > 0.05)[p > 0.5]
    sec = truth["secondary"][p > 0.5]
    assert wide[sec].mean() > 0.3 and wide[~sec].mean() < 0.001


def test_bayes_missing_only_at_random_or_without_detectors(sim_df):
    missing = sim_df["bayes_prob_pi"].isna()
    no_pid = (sim_df["has_tpc"] == 0) & (sim_df["has_tof"] == 0)
    assert missing[no_pid].all()
    assert 0.015 < missing[~no_pid].mean() < 0.05
    present = sim_df.loc[~missing, [f"bayes_prob_{c}" for c in ("pi", "ka", "pr", "el")]]
    np.testing.assert_allclose(present.sum(axis=1), 1.0, atol=1e-5)

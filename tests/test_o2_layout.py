"""The O2 layout: ROOT reading, layout detection, the 46-value vector, missing values, selections, simulator."""

import numpy as np
import pandas as pd
import pytest
import uproot
from sklearn.metrics import roc_auc_score

import pidx
import pidx.data.io
from pidx.data.files import write_table
from pidx.data.io import load_tracks
from pidx.data.layouts import (
    ITS_MEAN_SIZE, ITS_SIZE_COLUMNS, O2_BRANCHES, O2_EXTRA_INPUTS, O2_FILE_BRANCHES, O2_VECTOR_COLUMNS, its_cluster_count,
    its_size_columns, o2_vector,
)
from pidx.data.selection import TrackSelection
from pidx.errors import DataError

TYPES = O2_FILE_BRANCHES


@pytest.fixture(scope="module")
def o2_df():
    return pidx.simulate(n_tracks=6000, seed=13)


@pytest.fixture(scope="module")
def o2_root(o2_df, tmp_path_factory):
    path = tmp_path_factory.mktemp("o2") / "pid_features.root"
    write_table(o2_df, path, root_types=TYPES)
    return path


def test_simulator_writes_every_branch_with_the_extractor_types(o2_df, o2_root):
    expected = {"float": np.float32, "int": np.int32, "bool": np.bool_, "uint8": np.uint8}
    for name, ctype in TYPES.items():
        assert o2_df[name].dtype == expected[ctype], name
    tree = uproot.open(o2_root)["pid_features"]
    assert tree.classname == "TTree" and tree.num_entries == len(o2_df)
    assert tree["hasTOF"].typename == "bool" and "int32" in tree["tpcNClsFound"].typename
    assert "uint8" in tree["mcIsPhysicalPrimary"].typename
    # O2's missing-value conventions for absent detectors
    no_tof = ~o2_df.hasTOF
    assert (o2_df.beta[no_tof] == -999).all() and o2_df.tofMass[no_tof].isna().all()
    assert (o2_df.trackEtaEmcal[~o2_df.hasEMCal] == -999).all() and (o2_df.trackEtaEmcal[o2_df.hasEMCal] > -900).all()
    assert o2_df.hmpidSignal[~o2_df.hasHMPID].isna().all() and (o2_df.hmpidNPhotons[~o2_df.hasHMPID] == 0).all()
    assert o2_df.bayesProbPi[~o2_df.hasTPC].isna().all()
    assert np.allclose(o2_df.p, o2_df.pt * np.cosh(o2_df.eta), rtol=1e-5)


def test_new_detector_physics_separates_what_it_should():
    df = pidx.simulate(n_tracks=120_000, seed=5)
    species = np.abs(df.mcPdg.to_numpy())
    sizes = np.stack([(df.itsClusterSizes.to_numpy() >> (4 * k)) & 0xF for k in range(7)], 1)
    mean_size = np.where(sizes > 0, sizes, np.nan)
    mean_size = np.nanmean(mean_size, axis=1)
    low = (df.p > 0.3) & (df.p < 0.5)
    assert np.mean(mean_size[low & (species == 2212)]) > np.mean(mean_size[low & (species == 321)]) + 1.5
    trd = df.hasTRD & (df.p > 1.0)
    assert np.median(df.trdSignal[trd & (species == 11)]) > 2 * np.median(df.trdSignal[trd & (species == 211)])
    assert 0.0005 < df.hasHMPID.mean() < 0.004  # ~0.1 % of tracks matched
    ring = df.hasHMPID & (df.p > 1.5) & (df.p < 3)
    assert np.median(df.hmpidSignal[ring & (species == 211)]) > np.median(df.hmpidSignal[ring & (species == 2212)])


def test_o2_oracle_is_calibrated_and_beats_the_bayes_pid():
    df = pidx.simulate(n_tracks=150_000, seed=21)
    oracle = df[list(pidx.data.schema.ORACLE_COLUMNS)].to_numpy(np.float64)
    labels = pidx.data.schema.pdg_to_class(df.mcPdg.to_numpy())
    conf = oracle.max(1)
    correct = oracle.argmax(1) == labels
    for lo, hi in ((0.5, 0.7), (0.7, 0.9), (0.9, 1.0)):
        sel = (conf >= lo) & (conf < hi)
        assert abs(correct[sel].mean() - conf[sel].mean()) < 0.02  # calibrated in every confidence bin
    bayes = df[["bayesProbPi", "bayesProbKa", "bayesProbPr", "bayesProbEl"]].to_numpy()
    has = df.hasTPC.to_numpy()
    assert correct[has].mean() > (bayes[has].argmax(1) == labels[has]).mean() + 0.02


def test_its_cluster_count_counts_nonzero_nibbles():
    packed = np.array([0, 0x1, 0x1111111, 0xF0F0F0F, 0x3000000, -1], dtype=np.int64)
    assert its_cluster_count(packed).tolist() == [0, 1, 7, 4, 1, 7]


def test_vector_switches_groups_off_like_absent_detectors(o2_df):
    cols = {c: o2_df[c].to_numpy() for c in O2_BRANCHES}
    on = o2_vector(cols)
    assert list(on) == list(O2_VECTOR_COLUMNS) and len(on) == 46
    off = o2_vector(cols, disabled=("tof", "its", "centrality"))
    assert (off["hasTOF"] == 0).all() and np.isnan(off["beta"]).all() and (off["maskTOF"] == 0).all()
    assert (off["itsNCls"] == 0).all() and np.isnan(off["itsChi2NCl"]).all() and (off["maskITS"] == 0).all()
    assert (off["maskCentrality"] == 0).all() and (on["maskCentrality"] == 1).all()
    np.testing.assert_array_equal(off["tpcSignal"], on["tpcSignal"])
    with pytest.raises(DataError, match="unknown detector groups"):
        o2_vector(cols, disabled=("rich",))


def test_root_file_is_detected_and_loaded(o2_root, o2_df):
    table = load_tracks(o2_root)
    assert table.layout == "o2" and len(table) == len(o2_df)
    np.testing.assert_array_equal(table.labels, pidx.data.schema.pdg_to_class(o2_df.mcPdg.to_numpy()))
    assert set(table.frame) >= {"hasTPC", "maskITS", "itsNCls", "bayes_available", "centFT0C"}


def test_legacy_table_still_loads_and_is_detected(tmp_path):
    legacy = pidx.simulate(n_tracks=2000, seed=1, layout="legacy")
    path = tmp_path / "seed.csv"
    legacy.to_csv(path, index=False)
    assert load_tracks(path).layout == "legacy"


def test_nan_under_a_present_flag_makes_the_group_absent_and_is_counted(o2_df):
    df = o2_df.copy()
    rows = np.flatnonzero(df.hasTOF.to_numpy())[:25]
    df.loc[rows, "tofMass"] = np.nan  # what the old PID path does below 0.5 GeV/c
    table = pidx.data.io.tracks_from_frame(df)
    assert table.summary["made_absent"] == {"tof": 25}
    assert (table.frame["hasTOF"].to_numpy()[rows] == 0).all()
    assert table.frame["beta"].isna().to_numpy()[rows].all()  # never filled silently


def test_selection_cutflow_counts_each_cut(o2_df):
    sel = TrackSelection(vz_max=5.0, eta_max=0.5, dca_xy_max=0.105, min_tpc_clusters=120, min_its_clusters=7,
                         primaries_only=True)
    table = pidx.data.io.tracks_from_frame(o2_df, selection=sel)
    keep = np.ones(len(o2_df), bool)
    expected = {}
    its = its_cluster_count(o2_df.itsClusterSizes.to_numpy())
    for name, passed in (("vz_max", np.abs(o2_df.vz) < 5), ("eta_max", np.abs(o2_df.eta) < 0.5),
                         ("dca_xy_max", np.abs(o2_df.dcaXY) < 0.105), ("min_tpc_clusters", o2_df.tpcNClsFound >= 120),
                         ("min_its_clusters", its >= 7), ("primaries_only", o2_df.mcIsPhysicalPrimary == 1)):
        passed = np.asarray(passed)
        expected[name] = int((keep & ~passed).sum())
        keep &= passed
    assert table.summary["selection"] == expected and len(table) == keep.sum()
    legacy = pidx.simulate(n_tracks=500, seed=1, layout="legacy")
    with pytest.raises(DataError, match="vz_max needs column 'vz'"):
        pidx.data.io.tracks_from_frame(legacy, selection=TrackSelection(vz_max=10.0))


# ----------------------------------------------------------------------------- bad input
def test_root_file_without_the_tree(o2_df, tmp_path):
    path = tmp_path / "other.root"
    with uproot.recreate(path) as f:
        f.mktree("events", {"x": np.float32}).extend({"x": np.zeros(3, np.float32)})
    with pytest.raises(DataError, match=r"other.root: has no tree 'pid_features' \(trees in the file: events\)"):
        load_tracks(path)


def test_root_tree_missing_branches(o2_df, tmp_path):
    path = tmp_path / "partial.root"
    write_table(o2_df.drop(columns=["hasTRD", "trdSignal"]), path, root_types=TYPES)
    with pytest.raises(DataError, match="partial.root.*o2 layout.*hasTRD, trdSignal"):
        load_tracks(path)


def test_root_branch_of_the_wrong_type(o2_df, tmp_path):
    path = tmp_path / "wrongtype.root"
    write_table(o2_df, path, root_types={**TYPES, "tpcNClsFound": "float"})
    with pytest.raises(DataError, match="wrongtype.root: branch 'tpcNClsFound' has type float32.*int"):
        load_tracks(path)


def test_csv_in_neither_layout(tmp_path):
    path = tmp_path / "neither.csv"
    pd.DataFrame({"pt": [1.0], "eta": [0.1], "foo": [3]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="neither.csv: matches neither the o2 nor the legacy layout; closest is the "
                                       "legacy layout, which needs columns missing here: phi"):
        load_tracks(path)


def test_directory_and_glob_of_root_files(o2_df, tmp_path):
    for i, part in enumerate((o2_df.iloc[:2000], o2_df.iloc[2000:])):
        write_table(part.reset_index(drop=True), tmp_path / f"part{i}.root", root_types=TYPES)
    by_dir, by_glob = load_tracks(tmp_path), load_tracks(str(tmp_path / "part*.root"))
    assert len(by_dir) == len(by_glob) == len(o2_df)
    np.testing.assert_array_equal(by_dir.frame["pt"], o2_df.pt.to_numpy(np.float64))
    with pytest.raises(DataError, match="no file matches"):
        load_tracks(str(tmp_path / "nothing*.root"))
    # every file's branch types are checked, not only the first one's
    write_table(o2_df.iloc[:100].reset_index(drop=True), tmp_path / "part2.root",
                root_types={**TYPES, "hmpidNPhotons": "float"})
    with pytest.raises(DataError, match="part2.root: branch 'hmpidNPhotons' has type float32 where .*part0.root has "
                                       "int32"):
        load_tracks(tmp_path)


def test_run_log_and_metrics_state_the_layout_and_the_cutflow():
    from pathlib import Path

    from pidx.recipe import load_recipe
    from pidx.runs import data_log_line, make_datamodule

    recipe = Path(__file__).parent.parent / "recipes" / "simplenn_full.yaml"
    cfg = load_recipe(recipe, ["data.n_tracks=5000", "data.selection.vz_max=5", "data.primaries_only=true",
                               "data.cache=false"])
    dm = make_datamodule(cfg).setup()
    summary = dm.summary()
    assert summary["layout"] == "o2" and list(summary["selection"]) == ["vz_max", "primaries_only"]
    assert summary["selection"]["vz_max"] > 1000  # |vz| < 5 cm keeps ~60 % of a σ = 6 cm vertex spread
    line = data_log_line(cfg, dm)
    assert line.startswith("data: o2 layout (the simulator's default)")
    assert f"vz_max {summary['selection']['vz_max']:,}" in line and "primaries_only" in line


def test_its_cluster_size_columns_decode_the_nibbles_and_their_mean():
    packed = np.array([0, 0x1, 0x3000000, 0xF0F0F0F, 0x2131211], dtype=np.int64)
    eta = np.array([0.0, 0.0, 0.0, 0.0, 0.5])
    cols = its_size_columns({"itsClusterSizes": packed, "eta": eta})
    assert list(cols) == [*ITS_SIZE_COLUMNS, ITS_MEAN_SIZE]
    sizes = np.stack([cols[c] for c in ITS_SIZE_COLUMNS], 1)
    assert sizes.tolist() == [[0] * 7, [1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 3], [15, 0, 15, 0, 15, 0, 15],
                              [1, 1, 2, 1, 3, 1, 2]]
    np.testing.assert_allclose(cols[ITS_MEAN_SIZE], [0.0, 1.0, 3.0, 15.0, (11 / 7) / np.cosh(0.5)], rtol=1e-6)
    off = its_size_columns({"itsClusterSizes": packed, "eta": eta}, disabled=("its",))
    assert all((off[c] == 0).all() for c in off)


def test_extra_inputs_become_groups_and_centrality_cannot_be_switched_off(o2_df):
    extras = tuple(O2_EXTRA_INPUTS.values())
    table = pidx.data.io.tracks_from_frame(o2_df, extra_groups=extras)
    assert set(ITS_SIZE_COLUMNS) <= set(table.frame) and "centFT0C" in table.frame
    with pytest.raises(DataError, match="reads the centrality.*cannot be disabled"):
        pidx.data.io.tracks_from_frame(o2_df, extra_groups=extras, disabled_groups=("centrality",))
    # ITS switched off: the ITS group is absent and the sizes read 0, a track without clusters
    off = pidx.data.io.tracks_from_frame(o2_df, extra_groups=extras[:1], disabled_groups=("its",))
    assert off.frame["itsNCls"].isna().all()
    assert (off.frame[ITS_MEAN_SIZE] == 0).all() and (table.frame[ITS_MEAN_SIZE] > 0).mean() > 0.99


def test_its_cluster_sizes_carry_what_the_vector_drops():
    """The simulator's ITS cluster size grows with dE/dx (as ALICE's does); the 46-value vector keeps only the
    count of layers with a cluster, which is species-blind. In 0.7 < p < 1 GeV/c the mean size separates
    protons from pions and kaons; the count does not."""
    df = pidx.simulate(n_tracks=40_000, seed=17)
    df = df[(df.p > 0.7) & (df.p < 1.0)].reset_index(drop=True)
    table = pidx.data.io.tracks_from_frame(df, extra_groups=tuple(O2_EXTRA_INPUTS.values()))
    y, f = table.labels, table.frame
    for a, b, floor in ((0, 2, 0.9), (1, 2, 0.85)):  # pi vs p, K vs p
        pair = (y == a) | (y == b)
        assert roc_auc_score(y[pair] == b, f[ITS_MEAN_SIZE][pair]) > floor
        assert abs(roc_auc_score(y[pair] == b, f["itsNCls"][pair]) - 0.5) < 0.03

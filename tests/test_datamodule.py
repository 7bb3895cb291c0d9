import numpy as np
import pytest

from pidx.data import TrackDataModule
from pidx.simulation import SimulatorConfig
from pidx.errors import DataError


def make(**kw):
    kw.setdefault("simulator", SimulatorConfig(n_tracks=20_000, seed=3, layout="legacy"))
    return TrackDataModule(**kw).setup()


def test_split_sizes_disjoint_and_stratified():
    dm = make()
    n = {k: len(t) for k, t in dm.tables.items()}
    total = sum(n.values())
    assert abs(n["test"] / total - 0.2) < 0.002 and abs(n["val"] / total - 0.1) < 0.002
    rows = {k: set(map(tuple, np.c_[t.frame["pt"], t.frame["phi"]].tolist())) for k, t in dm.tables.items()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    fracs = [np.bincount(t.labels, minlength=4) / len(t) for t in dm.tables.values()]
    for f in fracs[1:]:
        np.testing.assert_allclose(f, fracs[0], atol=0.004)


def test_split_deterministic_and_seed_dependent():
    a, b = make(), make()
    np.testing.assert_array_equal(np.asarray(a.test.features), np.asarray(b.test.features))
    c = make(seed=1)
    assert not np.array_equal(np.asarray(a.test.label), np.asarray(c.test.label))


def test_momentum_ranges():
    dm = make(momentum_range="mid")
    for arrays in (dm.train, dm.val, dm.test):
        p = np.asarray(arrays.p)
        assert p.min() > 0.7 and p.max() < 1.5
    dm = make(momentum_range=(1.0, 3.0), momentum_variable="pt")
    pt = dm.tables["train"].frame["pt"].to_numpy()
    assert pt.min() > 1.0 and pt.max() < 3.0


def test_device_arrays_shapes_and_class_counts():
    dm = make(momentum_range="high")
    tr = dm.train
    assert tr.features.shape == (tr.num_tracks, 22) and tr.group_mask.shape == (tr.num_tracks, 4)
    assert str(tr.features.dtype) == "float32" and str(tr.label.dtype) == "int32"
    assert dm.class_counts.sum() == tr.num_tracks
    assert set(dm.summary()) >= {"train", "val", "test", "momentum_range"}


def test_empty_range_and_bad_range_errors():
    with pytest.raises(DataError, match=r"no tracks with 50.0 < p < 60.0"):
        make(momentum_range=(50, 60))
    with pytest.raises(DataError, match="unknown momentum range 'middle'"):
        TrackDataModule(momentum_range="middle")
    with pytest.raises(DataError, match="low < high"):
        TrackDataModule(momentum_range=(3, 1))


def test_too_few_tracks_of_a_class(tmp_path, sim_df):
    df = sim_df.head(500).copy()
    kaons = df.index[df["mc_pdg"].abs() == 321]
    df = df.drop(kaons[2:])  # two kaons left
    path = tmp_path / "few.parquet"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"few.parquet: classes ka \(2\)"):
        TrackDataModule(source=str(path)).setup()


def test_simulation_is_cached_by_parameters(monkeypatch):
    from pidx.simulation import cache

    calls = []
    real = cache.simulate
    monkeypatch.setattr(cache, "simulate", lambda cfg: calls.append(cfg) or real(cfg))
    cfg = SimulatorConfig(n_tracks=3000, seed=99)
    a = cache.simulated_tracks(cfg)
    b = cache.simulated_tracks(cfg)
    cache.simulated_tracks(SimulatorConfig(n_tracks=3000, seed=98))
    assert len(calls) == 2
    assert a.equals(b)

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pidx.data import DEFAULT_LAYOUT, Preprocessor, validate_tracks
from pidx.data.preprocess import squash
from pidx.data.schema import BAYES_TOKEN, FEATURE_COLUMNS
from pidx.errors import DataError


def test_bayes_token_and_masks(sim_df):
    table = validate_tracks(sim_df.head(5000))
    pre = Preprocessor.fit(table, DEFAULT_LAYOUT)
    x, mask = pre.transform(table)
    assert x.dtype == np.float32 and mask.dtype == bool and x.shape == (5000, 22)
    bayes_missing = table.frame["bayes_available"].to_numpy() == 0
    assert (x[bayes_missing, 10:14] == BAYES_TOKEN).all()
    np.testing.assert_array_equal(mask[:, 1], table.frame["has_tof"].to_numpy() == 1)
    assert mask[:, 3].all()  # kinematics always present
    assert (x[~mask[:, 1], 5:10] == 0).all()  # absent TOF -> train median (0 after scaling)
    np.testing.assert_array_equal(x[:, 20], mask[:, 1])  # availability feature


def test_kinematic_nan_gets_train_median(sim_df):
    df = sim_df.head(4000).copy()
    df.loc[:99, "dca_xy"] = np.nan
    table = validate_tracks(df)
    pre = Preprocessor.fit(table, DEFAULT_LAYOUT)
    x, _ = pre.transform(table)
    assert np.isfinite(x).all()
    assert (x[:100, DEFAULT_LAYOUT.feature_names.index("dca_xy")] == 0).all()
    np.testing.assert_allclose(pre.median["dca_xy"], np.median(df["dca_xy"].to_numpy(np.float64)[100:]))


def test_statistics_fitted_on_train_only(sim_df):
    train = validate_tracks(sim_df.iloc[:10_000])
    other = sim_df.iloc[10_000:].copy()
    a = Preprocessor.fit(train, DEFAULT_LAYOUT)
    other["tpc_signal"] *= 50  # changing non-train rows ...
    _ = validate_tracks(other)
    b = Preprocessor.fit(train, DEFAULT_LAYOUT)
    assert a.to_dict() == b.to_dict()  # ... leaves the fitted statistics unchanged
    moved = validate_tracks(pd.concat([sim_df.iloc[:9_000], other.iloc[:1000]]))
    assert Preprocessor.fit(moved, DEFAULT_LAYOUT).median["tpc_signal"] != a.median["tpc_signal"]


def test_round_trip_serialisation(sim_df):
    table = validate_tracks(sim_df.head(2000))
    pre = Preprocessor.fit(table, DEFAULT_LAYOUT)
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(pre.transform(table)[0], again.transform(table)[0])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_no_nan_for_any_mix_of_missing_detectors(sim_df, data):
    n = data.draw(st.integers(1, 40))
    rows = sim_df.sample(n, random_state=data.draw(st.integers(0, 10_000))).reset_index(drop=True)
    has_tpc = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    has_tof = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    bayes_style = data.draw(st.lists(st.sampled_from(["keep", "nan", "zero", "quarter"]), min_size=n, max_size=n))
    kin_nan = data.draw(st.lists(st.sampled_from([None, "dca_xy", "dca_z", "phi"]), min_size=n, max_size=n))
    for i in range(n):
        for flag, cols in (("has_tpc", [c for c in FEATURE_COLUMNS if c.startswith("tpc")]),
                           ("has_tof", [c for c in FEATURE_COLUMNS if c.startswith("tof")])):
            on = (has_tpc if flag == "has_tpc" else has_tof)[i]
            rows.loc[i, flag] = int(on)
            if on and rows.loc[i, cols].isna().any():
                rows.loc[i, cols] = 1.0  # turned on: give it finite values
            if not on:
                rows.loc[i, cols] = data.draw(st.sampled_from([np.nan, -999.0]))
        bayes = [c for c in FEATURE_COLUMNS if c.startswith("bayes")]
        fill = {"nan": np.nan, "zero": 0.0, "quarter": 0.25}.get(bayes_style[i])
        if fill is not None:
            rows.loc[i, bayes] = fill
        if kin_nan[i]:
            rows.loc[i, kin_nan[i]] = np.nan
    table = validate_tracks(rows)
    fit_on = validate_tracks(sim_df.head(3000))
    x, mask = Preprocessor.fit(fit_on, DEFAULT_LAYOUT).transform(table)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(mask[:, 0], has_tpc)
    np.testing.assert_array_equal(mask[:, 1], has_tof)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=50), st.floats(0.5, 10.0))
def test_squash_keeps_the_order_of_the_tails(values, knee):
    z = np.sort(np.asarray(values))
    out = squash(z, knee)
    inside = np.abs(z) <= knee
    np.testing.assert_array_equal(out[inside], z[inside])  # the core is untouched
    assert np.all(np.diff(out) >= 0)  # monotone: the order of the tail survives
    distinct = np.diff(z) > 1e-3 * np.maximum(1.0, np.abs(z[1:]))
    assert np.all(np.diff(out)[distinct] > 0)  # and distinct values stay distinct
    np.testing.assert_allclose(np.abs(out[~inside]), knee + np.log1p(np.abs(z[~inside]) - knee))
    assert squash(z, None) is z


def test_the_tail_of_a_feature_is_kept_not_clipped(sim_df):
    """Secondaries' DCAs lie hundreds of robust widths out: the hard clip made them all equal."""
    table = validate_tracks(sim_df.head(5000))
    col = DEFAULT_LAYOUT.feature_names.index("dca_xy")
    soft = Preprocessor.fit(table, DEFAULT_LAYOUT)
    hard = Preprocessor.fit(table, DEFAULT_LAYOUT, knee=None)
    assert soft.knee == 5.0 and hard.knee is None
    raw = table.frame["dca_xy"].to_numpy(np.float64)
    z = (raw - soft.median["dca_xy"]) / soft.scale["dca_xy"]
    far = np.abs(z) > hard.clip
    assert far.sum() > 10  # the simulator's secondaries
    x_soft, x_hard = soft.transform(table)[0][:, col], hard.transform(table)[0][:, col]
    assert len(np.unique(x_hard[far])) <= 2  # ±clip: the evidence is gone
    order = np.argsort(z[far])
    assert np.all(np.diff(x_soft[far][order]) >= 0) and len(np.unique(x_soft[far])) > 0.9 * far.sum()
    assert np.abs(x_soft).max() < hard.clip
    # an old checkpoint (no knee in its dict) keeps the hard clip it was trained with
    legacy = {k: v for k, v in hard.to_dict().items() if k != "knee"}
    np.testing.assert_array_equal(Preprocessor.from_dict(legacy).transform(table)[0][:, col], x_hard)
    np.testing.assert_array_equal(Preprocessor.from_dict(soft.to_dict()).transform(table)[0][:, col], x_soft)


def test_knee_outside_the_clip_is_an_error(sim_df):
    table = validate_tracks(sim_df.head(500))
    with pytest.raises(DataError, match="knee must be in"):
        Preprocessor.fit(table, DEFAULT_LAYOUT, knee=30.0)

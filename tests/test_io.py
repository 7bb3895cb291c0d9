import numpy as np
import pandas as pd
import pytest

from pidx.data import encode_missing, load_tracks, validate_tracks
from pidx.data.schema import BAYES_COLUMNS, TOF_COLUMNS
from pidx.errors import DataError


def test_missing_column_names_close_match(sim_df):
    df = sim_df.rename(columns={"tof_beta": "tof_betta"})
    with pytest.raises(DataError) as err:
        validate_tracks(df, source="tracks.csv")
    assert "tracks.csv" in str(err.value) and "'tof_beta'" in str(err.value) and "tof_betta" in str(err.value)


def test_non_numeric_column_names_column_and_value(sim_df):
    df = sim_df.head(100).copy()
    df["dca_z"] = df["dca_z"].astype(object)
    df.loc[5, "dca_z"] = "n/a?"
    with pytest.raises(DataError, match=r"column 'dca_z' is not numeric.*row 5.*n/a\?"):
        validate_tracks(df, source="x.parquet")


def test_unknown_pdg_error_and_drop_option(sim_df):
    df = sim_df.head(1000).copy()
    df.loc[:9, "mc_pdg"] = 13
    with pytest.raises(DataError, match=r"13 \(10 rows\)"):
        validate_tracks(df)
    for kwargs in ({"drop_unknown_pdg": True}, {"other_species": "exclude"}):  # the former name and the policy
        table = validate_tracks(df, **kwargs)
        assert len(table) == 990 and table.dropped == {"other_species": 10}
        assert table.summary["other_species"] == {"policy": "exclude", "tracks": {"mu": 10}}
    kept = validate_tracks(df, other_species="contamination")
    assert len(kept) == 1000 and not kept.dropped and (kept.labels[:10] == -1).all() and (kept.labels[10:] >= 0).all()
    assert kept.summary["other_species"]["tracks"] == {"mu": 10}


def test_empty_table():
    with pytest.raises(DataError, match="empty"):
        validate_tracks(pd.DataFrame(columns=["pt"]), source="e.csv")


def test_label_required_only_when_training(sim_df):
    df = sim_df.head(50).drop(columns=["mc_pdg"])
    with pytest.raises(DataError, match="mc_pdg"):
        validate_tracks(df, require_label=True)
    assert validate_tracks(df, require_label=False).labels is None


def test_flag_values_must_be_binary(sim_df):
    df = sim_df.head(50).copy()
    df["has_tof"] = df["has_tof"].astype(float)
    df.loc[3, "has_tof"] = 2.0
    with pytest.raises(DataError, match=r"flag column 'has_tof' must be 0 or 1; 1 rows"):
        validate_tracks(df)


def test_present_flag_with_missing_value_is_error_or_dropped(sim_df):
    df = sim_df.head(2000).copy()
    rows = df.index[df["has_tof"] == 1][:4]
    df.loc[rows, "tof_beta"] = np.nan
    df.loc[rows[:1], "tpc_nsigma_ka"] = -999.0  # a sentinel under a present flag is missing too
    with pytest.raises(DataError, match=r"'tpc_nsigma_ka' \(1 rows\).*'tof_beta' \(4 rows\)"):
        validate_tracks(df, source="f.parquet")
    table = validate_tracks(df, on_invalid="drop")
    assert len(table) == 1996 and table.dropped == {"invalid_values": 4}
    kept = validate_tracks(df, on_invalid="keep")  # prediction: kept, and marked as not scorable
    assert len(kept) == 2000 and kept.unscored.sum() == 4 and not kept.dropped


def test_absent_flag_ignores_garbage_values(sim_df):
    df = sim_df.head(500).copy()
    absent = df["has_tof"] == 0
    df.loc[absent, "tof_beta"] = 12345.0  # whatever an extractor left there
    table = validate_tracks(df)
    assert table.frame.loc[absent.to_numpy(), "tof_beta"].isna().all()


def test_bayes_missing_conventions(sim_df):
    df = sim_df.head(30).copy()
    probs = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    probs[0] = np.nan
    probs[1] = 0.0
    probs[2] = 0.25
    probs[3] = [0.25, 0.25, 0.5, 0.0]  # a genuine measurement, not missing
    df[list(BAYES_COLUMNS)] = probs
    avail = validate_tracks(df).frame["bayes_available"].to_numpy()
    assert avail[:4].tolist() == [0, 0, 0, 1] and avail[4:].all()
    df.loc[5, "bayes_prob_pi"] = 1.7
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        validate_tracks(df)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("bayes_fill", [0.0, 0.25])
def test_sentinel_and_nan_encodings_give_identical_tables(sim_df, tmp_path, suffix, bayes_fill):
    df = sim_df.head(3000)
    assert df[list(TOF_COLUMNS)].isna().any().all() and df[list(BAYES_COLUMNS)].isna().any().all()
    sentinel = encode_missing(df, "sentinel", bayes_fill=bayes_fill)
    assert not sentinel[list(TOF_COLUMNS + BAYES_COLUMNS)].isna().any().any()
    paths = []
    for name, frame in (("nan", df), ("sentinel", sentinel)):
        path = tmp_path / f"{name}{suffix}"
        (frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path))
        paths.append(path)
    a, b = (load_tracks(p) for p in paths)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.parquet: file not found"):
        load_tracks(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_tracks(tmp_path / "a.txt")
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="broken.parquet: cannot read as parquet"):
        load_tracks(bad)

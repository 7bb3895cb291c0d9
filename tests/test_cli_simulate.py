import pandas as pd

from pidx.cli import main


def test_simulate_writes_file_with_sentinels(tmp_path, capsys):
    out = tmp_path / "t.parquet"
    assert main(["simulate", "--n", "3000", "--seed", "1", "--out", str(out), "--layout", "legacy",
                 "--missing", "sentinel"]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 3000 and (df.loc[df["has_tof"] == 0, "tof_beta"] == -999).all()


def test_simulate_o2_root_file_and_missing_is_legacy_only(tmp_path, capsys):
    import uproot

    out = tmp_path / "pid_features.root"
    assert main(["simulate", "--n", "2000", "--seed", "1", "--out", str(out)]) == 0
    tree = uproot.open(out)["pid_features"]
    assert tree.num_entries == 2000 and tree["hasTOF"].typename == "bool" and "mcPdg" in tree.keys()
    assert main(["simulate", "--n", "10", "--out", str(tmp_path / "x.parquet"), "--missing", "sentinel"]) == 2
    assert "--missing applies to --layout legacy" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "--n", "10", "--out", str(tmp_path / "t.txt")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "unsupported output type" in err

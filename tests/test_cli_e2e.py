"""End to end through the CLI: fit → test → predict, with the real recipe files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import assert_beats_quick_baselines
from pidx.cli import main

RECIPE = str(Path(__file__).parent.parent / "recipes" / "fse_phase1_mid.yaml")
SMALL = ["--set", "data.n_tracks=40000", "--set", "trainer.max_epochs=3", "--set", "trainer.batch_size=256"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fse1"
    assert main(["fit", RECIPE, *SMALL, "--output", str(out), "--quiet"]) == 0
    return out


def test_fit_writes_run_directory(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"recipe.yaml", "history.csv", "checkpoints", "metrics.json"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test["per_class"]) == {"pi", "ka", "pr", "el"}
    for m in test["per_class"].values():
        assert set(m) >= {"auc", "efficiency", "purity", "f1"}
    assert 0.0 < metrics["majority_baseline"] < 1.0
    assert_beats_quick_baselines(metrics)  # the majority class, n-sigma and the priors, on the same test tracks
    t = metrics["training"]
    assert t["epochs_run"] == 3 and "max_epochs" in t["stop_reason"] and t["tracks_per_s"] > 0 and t["wall_s"] > 0
    assert (run_dir / "checkpoints" / t["best_checkpoint"].split("/", 1)[1]).is_dir()
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 3 and {"train/loss", "val/accuracy", "val/macro_auc"} <= set(history.columns)
    assert abs(test["n_tracks"] - metrics["data"]["test"]["n_tracks"]) == 0


def test_test_command_reproduces_fit_metrics(run_dir, tmp_path):
    out = tmp_path / "m.json"
    assert main(["test", str(run_dir), "--output", str(out)]) == 0
    again = json.loads(out.read_text())
    fit_metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert again["accuracy"] == pytest.approx(fit_metrics["accuracy"], abs=1e-9)
    assert again["n_tracks"] == fit_metrics["n_tracks"]


def test_validate_command_reproduces_the_monitored_val_nll(run_dir, tmp_path):
    """`pidx validate` recomputes, from a checkpoint alone, the val/nll the Trainer logged for that epoch."""
    history = pd.read_csv(run_dir / "history.csv")
    for checkpoint, epoch in ((None, int(history["val/nll"].idxmin())), ("last", len(history) - 1)):
        out = tmp_path / f"v_{checkpoint}.json"
        extra = [] if checkpoint is None else ["--checkpoint", str(run_dir / "checkpoints" / checkpoint)]
        assert main(["validate", str(run_dir), *extra, "--output", str(out)]) == 0
        metrics = json.loads(out.read_text())
        assert metrics["data"] == "validation split"
        assert metrics["nll"] == pytest.approx(history["val/nll"][epoch], rel=1e-5)
        assert metrics["n_tracks"] == json.loads((run_dir / "metrics.json").read_text())["data"]["val"]["n_tracks"]


def test_test_on_other_file_applies_momentum_range(run_dir, tmp_path):
    data = tmp_path / "other.parquet"
    assert main(["simulate", "--n", "5000", "--seed", "9", "--out", str(data)]) == 0
    out = tmp_path / "m.json"
    assert main(["test", str(run_dir), "--data", str(data), "--output", str(out)]) == 0
    df = pd.read_parquet(data)
    p = df["pt"] * np.cosh(df["eta"])
    assert json.loads(out.read_text())["n_tracks"] == int(((p > 0.7) & (p < 1.5)).sum())


def test_predict_every_row_in_order_without_labels(run_dir, tmp_path):
    data = tmp_path / "in.csv"
    assert main(["simulate", "--n", "3000", "--seed", "4", "--out", str(data)]) == 0
    df = pd.read_csv(data).drop(columns=["mcPdg"])
    df.to_csv(data, index=False)
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(run_dir), "--input", str(data), "--output", str(out)]) == 0
    pred = pd.read_parquet(out)
    assert len(pred) == len(df)
    np.testing.assert_array_equal(pred["pt"].to_numpy(), df["pt"].to_numpy())
    probs = pred[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert set(pred["pred"]) <= {"pi", "ka", "pr", "el"}
    np.testing.assert_array_equal(pred["pred"], np.array(["pi", "ka", "pr", "el"])[probs.argmax(1)])
    assert pred["in_momentum_range"].any() and not pred["in_momentum_range"].all()


def test_output_directory_is_not_mixed(run_dir, capsys):
    assert main(["fit", RECIPE, *SMALL, "--output", str(run_dir), "--quiet"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_print_config_and_recipe_errors_are_one_line(tmp_path, capsys):
    assert main(["fit", RECIPE, "--set", "trainer.max_epochs=7", "--print-config"]) == 0
    assert "max_epochs: 7" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epoch: 3}\n")
    assert main(["fit", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'trainer.max_epochs'" in err and "Traceback" not in err


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "pidx.cli", "recipes", str(Path(RECIPE).parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "fse_phase1_mid" in proc.stdout


def test_fit_writes_baselines_and_report(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    base = metrics["baselines"]
    assert set(base) == {"bayes_pid", "nsigma", "gbdt", "oracle", "vector_oracle"}
    assert base["oracle"]["gap_to_oracle_pp"] == 0 and base["vector_oracle"]["gap_to_vector_oracle_pp"] == 0
    assert metrics["test"]["gap_to_oracle_pp"] == pytest.approx(
        100 * (base["oracle"]["accuracy"] - metrics["test"]["accuracy"]))
    report = run_dir / "report"
    pngs = {p.name: p.stat().st_size for p in report.glob("*.png")}
    assert set(pngs) == {"roc.png", "efficiency_purity_vs_p.png", "confusion.png", "dedx_vs_p.png",
                         "tof_beta_vs_p.png", "training_curves.png", "feature_importance.png", "group_ablation.png",
                         "reliability.png", "purity_vs_efficiency.png", "output_train_test.png",
                         "input_distributions.png", "input_correlations.png"}
    assert min(pngs.values()) > 10_000  # real figures, not empty canvases
    text = (report / "report.md").read_text()
    for section in ("## Model and classic methods", "## Efficiency and purity vs momentum", "## ROC curves",
                    "## What the model uses", "![roc](roc.png)", "## Calibration", "## Working points",
                    "| method | pion @ 0.9 |", "## Overtraining check", "## Inputs", "passed / selected",
                    "| dcaXY |" if "dcaXY" in text else "| feature |"):
        assert section in text
    kaon = metrics["test"]["per_class"]["ka"]
    low, high = kaon["efficiency_interval"]
    assert f"{kaon['efficiency']:.4f} [{low:.4f}, {high:.4f}]" in text  # the per-species table's interval
    assert f"{metrics['test']['accuracy']:.4f}" in text and f"{base['gbdt']['accuracy']:.4f}" in text
    importance = json.loads((report / "importance.json").read_text())
    assert set(importance["importance_spread"]) == set(importance["importance"])
    ks = importance["overtraining"]
    for sp, count in metrics["data"]["test"]["class_counts"].items():  # the KS test saw every test track of a species
        assert ks[sp]["test_tracks"] == count and ks[sp]["train_tracks"] > 0.5 * count
    assert set(importance["ablation"]) == {"none", "tpc", "tof", "trd", "its", "emcal", "hmpid", "kinematics"}
    from pidx.data.layouts import O2

    assert list(importance["importance"]) == list(O2.features.feature_names)  # 34 values + 6 availability flags


def test_report_histograms_root_is_what_metrics_says(run_dir):
    """report/histograms.root, read back with uproot: per species the passed/total histograms give the
    efficiency and purity of metrics.json, whose intervals hold them; the confusion counts are the test
    tracks; the dE/dx and β maps count every track with the signal (per species: the species' tracks)."""
    import uproot

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test, counts = metrics["test"], metrics["data"]["test"]["class_counts"]
    predictions = pd.read_parquet(run_dir / "test_predictions.parquet")
    with uproot.open(run_dir / "report" / "histograms.root") as f:
        def total(name):
            return float(f[name].values(flow=True).sum())

        for sp, m in test["per_class"].items():
            for var in ("p", "pt"):
                passed, true = total(f"model/efficiency_vs_{var}/{sp}_passed"), total(f"model/efficiency_vs_{var}/{sp}_total")
                assert true == m["n_true"] == counts[sp]
                assert passed / true == pytest.approx(m["efficiency"], abs=1e-12)
                selected = total(f"model/purity_vs_{var}/{sp}_total")
                assert selected == m["n_selected"]
                assert (passed / selected if selected else None) == pytest.approx(m["purity"], abs=1e-12)
            for key in ("efficiency", "purity"):
                low, high = m[f"{key}_interval"]
                if m[key] is None:  # a species never selected: no purity, no interval
                    assert key == "purity" and m["n_selected"] == 0 and low is None
                else:
                    assert low <= m[key] <= high and high - low < 0.3
        confusion = f["model/confusion"].values()
        assert confusion.sum() == sum(counts.values()) == test["n_tracks"]
        np.testing.assert_allclose(confusion / confusion.sum(1, keepdims=True), test["confusion_normalized"], atol=1e-6)
        assert f["model/efficiency_vs_p/pi_passed"].classname == "TH1D" and f["maps/tpc_dedx_vs_p"].classname == "TH2D"
        assert total("maps/tpc_dedx_vs_p") == np.isfinite(predictions["tpc_signal"]).sum()
        assert total("maps/tof_beta_vs_p") == predictions["has_tof"].sum() > 0
        assert total("maps/tof_beta_vs_p_ka") == (predictions["has_tof"] & (predictions["label"] == 1)).sum()
        for wp in metrics.get("working_points", []):
            assert f"wp_{wp['column'].removeprefix('select_')}/efficiency_vs_p" in f


def test_report_command_rebuilds_missing_predictions(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "test_predictions.parquet").unlink()
    shutil.rmtree(copy / "report")
    assert main(["report", str(copy), "--max-tracks", "2000"]) == 0
    assert (copy / "report" / "report.md").is_file() and (copy / "test_predictions.parquet").is_file()
    # what report rebuilt is what fit wrote, column by column (a species swapped or a baseline refit differently fails)
    original = pd.read_parquet(run_dir / "test_predictions.parquet")
    rebuilt = pd.read_parquet(copy / "test_predictions.parquet")
    assert list(rebuilt.columns) == list(original.columns)
    pd.testing.assert_frame_equal(rebuilt, original, check_exact=False, atol=1e-6, rtol=0)


def test_compare_table(run_dir, tmp_path, capsys):
    other = tmp_path / "simplenn"
    assert main(["fit", RECIPE.replace("fse_phase1", "simplenn"), *SMALL, "--set", "evaluation.report=false",
                 "--set", "evaluation.baselines=[oracle]", "--output", str(other), "--quiet"]) == 0
    out = tmp_path / "table"
    assert main(["compare", str(run_dir), str(other), "--output", str(out)]) == 0
    rows = pd.read_csv(out.with_suffix(".csv"))
    models = rows["model"].tolist()
    assert models == ["fse_phase1", "[bayes_pid]", "[nsigma]", "[gbdt]", "[oracle]", "[vector_oracle]", "simplenn",
                      "[oracle]"]
    m = json.loads((run_dir / "metrics.json").read_text())
    first = rows.iloc[0]
    assert first["accuracy"] == pytest.approx(m["test"]["accuracy"], abs=1e-9)
    assert first["eff_ka"] == pytest.approx(m["test"]["per_class"]["ka"]["efficiency"], abs=1e-9)
    low, high = m["test"]["per_class"]["ka"]["efficiency_interval"]
    assert (first["eff_ka_low"], first["eff_ka_high"]) == pytest.approx((low, high), abs=1e-9)
    assert first["eff_ka_low"] <= first["eff_ka"] < first["eff_ka_high"]
    assert first["gap_to_oracle_pp"] == pytest.approx(m["test"]["gap_to_oracle_pp"], abs=1e-9)
    assert first["gap_to_vector_oracle_pp"] == pytest.approx(m["test"]["gap_to_vector_oracle_pp"], abs=1e-9)
    assert (rows["range"] == "mid").all()
    md = out.with_suffix(".md").read_text()
    assert md.count("\n") == len(rows) + 2 and "| mid | fse_phase1 |" in md
    assert f"{first['eff_ka']:.4f} [{low:.4f}, {high:.4f}]" in md  # the interval beside the rate
    assert "pidx compare" in capsys.readouterr().out


def test_predict_select_working_point(run_dir, tmp_path, capsys):
    """--select writes a boolean column; the threshold comes from the validation split and the test
    split's efficiency and purity are printed overall and per momentum bin."""
    data = tmp_path / "in.parquet"
    assert main(["simulate", "--n", "20000", "--seed", "5", "--out", str(data)]) == 0
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(run_dir), "--input", str(data), "--output", str(out),
                 "--select", "pr:efficiency=0.9", "--select", "pi:purity=0.9"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    pred = pd.read_parquet(out)
    for col, species in (("select_pr_efficiency_0.9", "pr"), ("select_pi_purity_0.9", "pi")):
        assert pred[col].dtype == bool and pred[col].any() and not pred[col].all()
        assert not (pred[col] & ~pred["in_momentum_range"]).any()
        # a threshold on the species' posterior: every selected track scores above every rejected one in range
        inside = pred[pred["in_momentum_range"]]
        assert inside.loc[inside[col], f"prob_{species}"].min() >= inside.loc[~inside[col], f"prob_{species}"].max()
    assert "pr:efficiency=0.9: threshold" in printed and "GeV/c: efficiency" in printed
    # the same threshold as the one chosen on the validation split (the test split then reports it)
    from pidx.runs import predict_file

    info = predict_file(run_dir, data, tmp_path / "again.parquet", select=("pr:efficiency=0.9",))
    sel = info["selections"][0]
    assert sel["validation"]["efficiency"] >= 0.9 and 0.8 < sel["test"]["efficiency"] < 1.0
    inside = pred[pred["in_momentum_range"]]
    assert inside.loc[inside["select_pr_efficiency_0.9"], "prob_pr"].min() >= np.float32(sel["threshold"])
    assert main(["predict", str(run_dir), "--input", str(data), "--output", str(out), "--select", "kaon:p=1"]) == 2


@pytest.fixture(scope="module")
def simplenn_run(tmp_path_factory):
    """A SimpleNN that learns kaons (the 3-epoch FSE run barely does): 150k tracks, 8 epochs."""
    out = tmp_path_factory.mktemp("runs") / "snn"
    recipe = str(Path(RECIPE).parent / "simplenn_mid.yaml")
    assert main(["fit", recipe, "--set", "data.n_tracks=150000", "--set", "trainer.max_epochs=8", "--set",
                 "trainer.batch_size=512", "--set", "evaluation.report=false", "--set", "evaluation.baselines=[]",
                 "--output", str(out), "--quiet"]) == 0
    return out


def test_priors_command_and_bad_priors(simplenn_run, tmp_path, capsys):
    """`pidx priors` estimates the abundances of an unlabelled file with other abundances and writes
    them for --priors. (Within 0.5 pp with exact posteriors: tests/test_posteriors.py; a small model
    a few pp from the oracle gets within a few pp.)"""
    import pidx

    run_dir = simplenn_run
    df = pidx.simulate(pidx.SimulatorConfig(n_tracks=60_000, seed=21, species_fractions=(0.45, 0.25, 0.2, 0.1)))
    in_range = (df["p"] > 0.7) & (df["p"] < 1.5)
    truth = np.bincount(df[in_range]["mcPdg"].abs().map({211: 0, 321: 1, 2212: 2, 11: 3}), minlength=4)
    truth = truth / truth.sum()
    data = tmp_path / "other.parquet"
    df.drop(columns=["mcPdg"]).to_parquet(data)
    out = tmp_path / "priors.json"
    assert main(["priors", str(run_dir), "--input", str(data), "--output", str(out)]) == 0
    info = json.loads(out.read_text())
    est, train = np.array(list(info["priors"].values())), np.array(list(info["train_priors"].values()))
    assert info["converged"] and info["tracks"] == int(in_range.sum())
    assert np.abs(train - truth).max() > 0.2  # a real shift: kaons 6 % → 28 %
    assert np.abs(est - truth).max() < 0.03
    assert main(["test", str(run_dir), "--priors", str(out), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["posterior"]["priors"] == pytest.approx(est)
    capsys.readouterr()
    for bad, words in (("pi=0.5,ka=0.5", "missing"), ("pi=0.5,ka=0.5,pr=0.5,el=0.5", "sum to 1"),
                       (str(tmp_path / "nope.json"), "pi=…")):
        assert main(["test", str(run_dir), "--priors", bad]) == 2
        assert words in capsys.readouterr().err

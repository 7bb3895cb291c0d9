"""Files as ALICE's productions write them: time-frame directories, other species, values no
detector produces, files larger than memory (streamed predict), and one writer per run directory."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot

import pidx
from pidx.cli import main
from pidx.data.files import root_branches, write_table
from pidx.data.io import load_tracks
from pidx.data.layouts import O2_FILE_BRANCHES
from pidx.errors import DataError
from pidx.recipe import load_recipe
from pidx.runs.build import load_predictor
from pidx.runs.rundir import RunDir

RECIPE = str(Path(__file__).parent.parent / "recipes" / "fse_phase1_full.yaml")
PROBS = ["prob_pi", "prob_ka", "prob_pr", "prob_el"]
SMALL = ["--set", "trainer.max_epochs=2", "--set", "trainer.batch_size=256", "--set", "evaluation.report=false",
         "--set", "model.hidden_dim=16", "--quiet"]


def write_time_frames(path: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """A ROOT file with one `pid_features` tree per time-frame directory, as O2's writers store them."""
    with uproot.recreate(path) as f:
        for name, df in frames.items():
            branches = root_branches(df, path, O2_FILE_BRANCHES)
            f.mktree(f"{name}/pid_features", {k: v.dtype for k, v in branches.items()}).extend(branches)
    return path


def with_other_species(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """ALICE MC's other species in realistic fractions: 2 % muons, 0.6 % deuterons, 1 % fake tracks (PDG 0)."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    u = rng.random(len(df))
    sign = np.where(rng.random(len(df)) < 0.5, 1, -1).astype(np.int32)
    df.loc[u < 0.02, "mcPdg"] = 13 * sign[u < 0.02]
    df.loc[(u >= 0.02) & (u < 0.026), "mcPdg"] = 1000010020
    df.loc[(u >= 0.026) & (u < 0.036), "mcPdg"] = 0
    return df


@pytest.fixture(scope="module")
def sim():
    return pidx.simulate(n_tracks=12_000, seed=17)


@pytest.fixture(scope="module")
def mc_file(sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("mc") / "mc.root"
    write_table(with_other_species(sim), path, root_types=O2_FILE_BRANCHES)
    return path


@pytest.fixture(scope="module")
def mc_run(mc_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mc"
    assert main(["fit", RECIPE, "--set", f"data.source={mc_file}", "--set", "evaluation.baselines=[nsigma,gbdt]",
                 "--set", "evaluation.working_points=[pi:purity=0.95]", *SMALL, "--output", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- time-frame directories
@pytest.fixture(scope="module")
def df_file(sim, tmp_path_factory):
    parts = {f"DF_{i}": sim.iloc[a:b].reset_index(drop=True) for i, (a, b) in
             enumerate(((0, 3000), (3000, 7000), (7000, 12_000)), start=1)}
    return write_time_frames(tmp_path_factory.mktemp("df") / "AO2D_like.root", parts)


def test_every_time_frame_directory_is_read(df_file, sim):
    table = load_tracks(df_file)  # no top-level tree: every DF_*/pid_features
    assert len(table) == len(sim)
    assert table.summary["trees"] == {f"{df_file}:DF_1/pid_features": 3000, f"{df_file}:DF_2/pid_features": 4000,
                                      f"{df_file}:DF_3/pid_features": 5000}
    np.testing.assert_allclose(table.frame["pt"], sim["pt"].astype(np.float32))
    assert len(load_tracks(df_file, tree="DF_*/pid_features")) == len(sim)
    assert len(load_tracks(df_file, tree="DF_2/pid_features")) == 4000
    with pytest.raises(DataError, match=r"no tree 'nope'.*DF_1/pid_features"):
        load_tracks(df_file, tree="nope")


def test_time_frames_that_disagree_name_the_directory(sim, tmp_path):
    other = sim.iloc[:100].drop(columns=["trdChi2"]).reset_index(drop=True)
    path = write_time_frames(tmp_path / "bad.root", {"DF_1": sim.iloc[:100].reset_index(drop=True), "DF_7": other})
    with pytest.raises(DataError, match=r"bad.root: DF_7/pid_features has other branches than DF_1/pid_features "
                                        r"\(trdChi2\)"):
        load_tracks(path)


def test_predict_and_test_read_time_frames_with_tree(mc_run, df_file, sim, tmp_path):
    out = tmp_path / "p.parquet"
    assert main(["predict", str(mc_run), "--input", str(df_file), "--output", str(out),
                 "--tree", "DF_*/pid_features"]) == 0
    pred = pd.read_parquet(out)
    assert len(pred) == len(sim)
    np.testing.assert_array_equal(pred["pt"].to_numpy(), sim["pt"].to_numpy(np.float32))
    metrics = tmp_path / "m.json"
    assert main(["test", str(mc_run), "--data", str(df_file), "--tree", "DF_2/pid_features", "-o", str(metrics)]) == 0
    m = json.loads(metrics.read_text())
    assert m["data_summary"].get("trees") is None  # one tree read
    assert m["n_tracks"] == 4000  # DF_2's tracks (all inside the full range), not the file's 12,000


def test_fit_on_time_frames_counts_each_directory(df_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", RECIPE, "--set", f"data.source={df_file}", "--set", "evaluation.baselines=[nsigma]",
                 "--set", "trainer.max_epochs=1", "--set", "trainer.batch_size=512", "--set", "evaluation.report=false",
                 "--set", "model.hidden_dim=16", "--output", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())["data"]
    assert list(data["trees"].values()) == [3000, 4000, 5000]
    assert "read 3 trees (DF_1/pid_features 3,000, DF_2/pid_features 4,000, DF_3/pid_features 5,000)" \
        in capsys.readouterr().err


# ----------------------------------------------------------------------------- other species
def test_predict_never_reads_labels(mc_run, mc_file, tmp_path):
    out = tmp_path / "p.parquet"
    assert main(["predict", str(mc_run), "--input", str(mc_file), "--output", str(out)]) == 0
    pred = pd.read_parquet(out)
    raw = uproot.open(mc_file)["pid_features"].arrays(["mcPdg"], library="pd")
    assert len(pred) == len(raw) and (pred["mcPdg"].to_numpy() == raw["mcPdg"].to_numpy()).all()
    assert np.isfinite(pred[PROBS].to_numpy()).all()


def test_fit_counts_other_species_and_purity_counts_them(mc_run, mc_file):
    metrics = json.loads((mc_run / "metrics.json").read_text())
    pdg = uproot.open(mc_file)["pid_features"]["mcPdg"].array(library="np")
    other = metrics["data"]["other_species"]
    assert other["policy"] == "contamination"
    assert other["tracks"] == {"mu": int(np.sum(np.abs(pdg) == 13)), "fake (PDG 0)": int(np.sum(pdg == 0)),
                               "d": int(np.sum(pdg == 1000010020))}
    in_range = sum(sum(v.values()) for v in other["in_range"].values())
    assert other["excluded_from_training"] + other["contamination"]["val"] + other["contamination"]["test"] == in_range
    assert sum(metrics["data"]["train"]["class_counts"].values()) == metrics["data"]["train"]["n_tracks"]
    test = metrics["test"]
    assert test["contamination"]["tracks"] == other["contamination"]["test"] > 50
    # the purity counts every selected track, other species included: recomputed from the predictions
    pred = pd.read_parquet(mc_run / "test_predictions.parquet")
    labels, probs = pred["label"].to_numpy(), pred[[f"model_prob_{c}" for c in ("pi", "ka", "pr", "el")]].to_numpy()
    assert (labels == -1).sum() == other["contamination"]["test"]
    chosen = probs.argmax(1)
    for c, name in enumerate(("pi", "ka", "pr", "el")):
        selected = chosen == c
        if selected.any():
            assert test["per_class"][name]["purity"] == pytest.approx(np.mean(labels[selected] == c))
    pions = test["per_class"]["pi"]
    assert pions["purity"] < pions["purity_without_contamination"]  # muons look like pions
    assert test["n_tracks"] == int((labels >= 0).sum())  # accuracy is about π, K, p, e
    # baselines are charged with the same contamination
    assert metrics["baselines"]["gbdt"]["contamination"]["tracks"] == test["contamination"]["tracks"]
    point = metrics["working_points"][0]
    assert point["reached_on_validation"]
    selected = probs[:, 0] >= point["threshold"]
    assert point["test"]["purity"] == pytest.approx(np.mean(labels[selected] == 0))
    assert (labels[selected] == -1).any()  # muons among the selected pions, counted against its purity


def test_report_counts_other_species(mc_run):
    assert main(["report", str(mc_run), "--max-tracks", "2000"]) == 0
    text = (mc_run / "report" / "report.md").read_text()
    metrics = json.loads((mc_run / "metrics.json").read_text())
    counts = metrics["data"]["other_species"]["tracks"]
    assert f"other species mu {counts['mu']:,}, fake (PDG 0) {counts['fake (PDG 0)']:,}, d {counts['d']:,}" in text
    assert f"also holds {metrics['test']['contamination']['tracks']:,} tracks of other species" in text


def test_test_command_counts_other_species(mc_run, mc_file, tmp_path):
    out = tmp_path / "m.json"
    assert main(["test", str(mc_run), "--data", str(mc_file), "-o", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["data_summary"]["other_species"]["tracks"]["mu"] > 100
    assert m["contamination"]["tracks"] > 100


def test_exclude_and_error_policies(mc_file, tmp_path):
    with pytest.raises(DataError, match=r"unknown PDG codes: .*13 .*data.other_species"):
        load_tracks(mc_file, other_species="error")
    excluded = load_tracks(mc_file, other_species="exclude")
    assert (excluded.labels >= 0).all() and excluded.dropped["other_species"] == sum(
        excluded.summary["other_species"]["tracks"].values())


# ----------------------------------------------------------------------------- values no detector produces
def _odd_file(sim, tmp_path) -> tuple[Path, dict]:
    df = sim.iloc[:3000].reset_index(drop=True).copy()
    rows = {"huge": int(np.flatnonzero(df.hasTPC)[0]), "inf": int(np.flatnonzero(df.hasTOF)[1]),
            "negative_p": 7}
    df.loc[rows["huge"], "tpcSignal"] = 1e30
    df.loc[rows["inf"], "beta"] = np.inf
    df.loc[rows["negative_p"], "p"] = -0.8
    path = tmp_path / "odd.root"
    write_table(df, path, root_types=O2_FILE_BRANCHES)
    return path, rows


def test_implausible_values_are_absent_and_counted_or_refused(mc_run, sim, tmp_path, capsys):
    path, rows = _odd_file(sim, tmp_path)
    table = load_tracks(path, other_species="exclude")
    assert table.summary["implausible"] == {"policy": "absent", "columns": {"tpcSignal": 1, "beta": 1, "p": 1}}
    assert table.dropped == {"implausible_values": 1}  # no momentum: no track (fit and test count it)
    with pytest.raises(DataError, match=r"column 'tpcSignal' has 1 values no detector produces \(e.g. 1e\+30\).*"
                                        r"\[0, 10000\].*data.implausible"):
        load_tracks(path, implausible="error")
    out = tmp_path / "p.parquet"
    assert main(["predict", str(mc_run), "--input", str(path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "tpcSignal 1" in err and "beta 1" in err and "1 rows not scored" in err
    pred = pd.read_parquet(out)
    assert len(pred) == 3000 and np.isnan(pred.loc[rows["negative_p"], PROBS].to_numpy(float)).all()
    assert pred.loc[rows["negative_p"], "pred"] == ""
    # the group is absent for those tracks: the same answer as with the flag off
    df = sim.iloc[:3000].reset_index(drop=True).copy()
    df.loc[rows["huge"], "hasTPC"] = False
    df.loc[rows["inf"], "hasTOF"] = False
    plain = tmp_path / "plain.root"
    write_table(df, plain, root_types=O2_FILE_BRANCHES)
    ref = tmp_path / "ref.parquet"
    assert main(["predict", str(mc_run), "--input", str(plain), "--output", str(ref)]) == 0
    ref_probs = pd.read_parquet(ref)[PROBS].to_numpy()
    for r in (rows["huge"], rows["inf"]):
        np.testing.assert_allclose(pred.loc[r, PROBS].to_numpy(float), ref_probs[r], atol=1e-6)
    # the exported graph decides the same: groups absent, no probabilities for the track without a momentum
    import onnxruntime as ort
    from test_o2_deploy import TOGGLES, _tracks, run_inference_vector

    assert main(["export", str(mc_run), "--output", str(tmp_path / "m.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([run_inference_vector(t, {k: True for k in TOGGLES}) for t in _tracks(path)], np.float32)
    graph = session.run(None, {session.get_inputs()[0].name: x})[-1]
    ours = pred[PROBS].to_numpy(float)
    assert (np.isnan(graph) == np.isnan(ours)).all() and np.isnan(graph[rows["negative_p"]]).all()
    np.testing.assert_allclose(np.nan_to_num(graph), np.nan_to_num(ours), atol=1e-5)


# ----------------------------------------------------------------------------- streamed predict
def test_streamed_predict_equals_in_memory_row_for_row(mc_run, mc_file, tmp_path):
    out = tmp_path / "chunked.parquet"
    assert main(["predict", str(mc_run), "--input", str(mc_file), "--output", str(out), "--chunk-tracks", "997",
                 "--uncertainty"]) == 0
    chunked = pd.read_parquet(out)
    _, predictor, _ = load_predictor(RunDir.open(mc_run), recipe_priors=True)
    table = load_tracks(mc_file, require_label=False, read_labels=False, layout=predictor.preprocessor.layout)
    whole = predictor.predict_table(table)
    raw = uproot.open(mc_file)["pid_features"].arrays(library="pd")
    assert len(chunked) == len(raw) > 997 * 10
    pd.testing.assert_frame_equal(chunked[list(raw.columns)], raw)
    np.testing.assert_allclose(chunked[PROBS].to_numpy(), whole, atol=1e-6)
    assert (chunked["pred"].to_numpy() == np.asarray(["pi", "ka", "pr", "el"])[whole.argmax(1)]).all()
    csv = tmp_path / "chunked.csv"
    assert main(["predict", str(mc_run), "--input", str(mc_file), "--output", str(csv), "--chunk-tracks", "5000"]) == 0
    np.testing.assert_allclose(pd.read_csv(csv)[PROBS].to_numpy(), chunked[PROBS].to_numpy(), atol=1e-6)


def test_failed_predict_leaves_no_output(mc_run, sim, tmp_path):
    df = sim.iloc[:3000].reset_index(drop=True).copy()
    df["hasTOF"] = df["hasTOF"].astype(np.int32)
    df.loc[2500, "hasTOF"] = 2  # a flag that is no flag, in the third chunk
    path = tmp_path / "bad.parquet"
    write_table(df, path)
    out = tmp_path / "out.parquet"
    assert main(["predict", str(mc_run), "--input", str(path), "--output", str(out), "--chunk-tracks", "1000"]) == 2
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))


# ----------------------------------------------------------------------------- one writer per run directory
def _pidx(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "pidx.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_lock(run: Path, proc, timeout=120.0) -> int:
    lock = run / ".pidx.lock"
    end = time.time() + timeout
    while time.time() < end:
        if lock.is_file() and lock.read_text().strip() == str(proc.pid):
            return proc.pid
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the first fit never took the run directory")


def test_a_second_fit_on_the_same_directory_is_refused(mc_file, tmp_path):
    run = tmp_path / "shared"
    args = ["fit", RECIPE, "--set", f"data.source={mc_file}", "--set", "evaluation.baselines=[nsigma]",
            "--set", "trainer.max_epochs=2", "--set", "evaluation.report=false", "--set", "model.hidden_dim=16",
            "--set", "trainer.batch_size=256", "--output", str(run), "--resume", "auto", "--quiet",
            "--set", "callbacks=" + json.dumps(load_recipe(RECIPE).to_dict()["callbacks"]
                                               + [{"helpers:SlowEpochs": {"seconds": 3.0}}])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    first = _pidx(*args, env=env)
    holder = _wait_for_lock(run, first)
    second = _pidx(*args, env=env)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and f"in use by another pidx process (PID {holder})" in err
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads((run / "metrics.json").read_text())["training"]["epochs_run"] == 2
    # a holder killed with -9 leaves the directory free: the next fit resumes it at once
    run2 = tmp_path / "killed"
    args2 = [a if a != str(run) else str(run2) for a in args]
    victim = _pidx(*args2, env=env)
    _wait_for_lock(run2, victim)
    victim.kill()
    victim.wait()
    again = _pidx(*args2, env=env)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err

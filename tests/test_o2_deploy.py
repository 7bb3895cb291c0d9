"""From an O2 extractor file to a model O2Physics runs: fit on a ROOT file → predict → export --target o2physics.

The parity check rebuilds the model input the way O2Physics does, transcribed line by line from
`runInference` in AliceO2Group/O2Physics `Tools/PIDFeatureExtractor/pidOnnxInference.cxx` (not
from pidx's own `o2_vector`), runs the exported file in ONNX Runtime as `MlResponse` does (one
input, the last output's 4 values) and compares with `pidx predict` on the same file.
"""

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort  # in the test extra: a missing install fails, never skips
import pandas as pd
import pytest
import uproot

import pidx
from helpers import assert_beats_quick_baselines
from pidx.cli import main
from pidx.data.files import write_table
from pidx.data.layouts import O2_FILE_BRANCHES
from pidx.data.io import load_tracks
from pidx.errors import ExportError
from pidx.evaluation.baselines import gbdt_features
from pidx.export.o2physics import o2physics_bins
from pidx.runs.build import load_predictor
from pidx.runs.export import export_run
from pidx.runs.rundir import RunDir

RECIPE = str(Path(__file__).parent.parent / "recipes" / "fse_phase1_full.yaml")
TOL = 1e-5
TOGGLES = ("TPC", "TOF", "TRD", "ITS", "EMCal", "HMPID", "Centrality")


def run_inference_vector(t: dict, use: dict) -> list:
    """`runInference`'s `x` for one track `t` (branch values as the C++ binds them), toggles `use`."""
    nan = np.float32(np.nan)
    f32 = np.float32
    eff_tpc = bool(t["hasTPC"]) and use["TPC"]
    eff_tof = bool(t["hasTOF"]) and use["TOF"]
    eff_trd = bool(t["hasTRD"]) and use["TRD"]
    eff_emcal = bool(t["hasEMCal"]) and use["EMCal"]
    eff_hmpid = bool(t["hasHMPID"]) and use["HMPID"]

    def its_nclusters(v):  # getItsNClusters(static_cast<uint32_t>(itsClusterSizes))
        v = int(v) & 0xFFFFFFFF
        return sum(1 for layer in range(7) if (v >> (layer * 4)) & 0xF)

    x = [t["p"], t["pt"], t["px"], t["py"], t["pz"], t["eta"], t["phi"], t["dcaXY"], t["dcaZ"]]
    x.append(f32(eff_tpc))
    x += [t[k] if eff_tpc else nan for k in ("tpcSignal", "tpcNSigmaPi", "tpcNSigmaKa", "tpcNSigmaPr", "tpcNSigmaEl")]
    x.append(f32(t["tpcNClsFound"]) if eff_tpc else f32(0))
    x.append(t["tpcChi2NCl"] if eff_tpc else nan)
    x.append(f32(eff_tof))
    x += [t[k] if eff_tof else nan for k in ("tofMass", "beta", "tofNSigmaPi", "tofNSigmaKa", "tofNSigmaPr",
                                             "tofNSigmaEl")]
    x.append(f32(eff_trd))
    x += [t["trdSignal"] if eff_trd else nan, t["trdChi2"] if eff_trd else nan]
    x.append(f32(t["trdPattern"]) if eff_trd else f32(0))
    x.append(f32(its_nclusters(t["itsClusterSizes"])) if use["ITS"] else f32(0))
    x.append(t["itsChi2NCl"] if use["ITS"] else nan)
    x.append(f32(eff_emcal))
    x += [t["trackEtaEmcal"] if eff_emcal else nan, t["trackPhiEmcal"] if eff_emcal else nan]
    x.append(f32(eff_hmpid))
    x += [t["hmpidSignal"] if eff_hmpid else nan, t["hmpidQMip"] if eff_hmpid else nan]
    x += [f32(t["hmpidNPhotons"]) if eff_hmpid else f32(0), f32(t["hmpidClusSize"]) if eff_hmpid else f32(0)]
    x.append(t["hmpidMom"] if eff_hmpid else nan)
    x += [f32(eff_tpc), f32(eff_tof), f32(eff_trd), f32(use["ITS"]), f32(eff_emcal), f32(eff_hmpid),
          f32(use["Centrality"])]
    return x


@pytest.fixture(scope="module")
def o2_file(tmp_path_factory):
    """A `pid_features` ROOT file: simulated tracks, plus blocks with each group absent in turn and
    tracks whose flag says TOF but whose TOF values are NaN (as the old PID path writes)."""
    df = pidx.simulate(n_tracks=9000, seed=31)
    n = len(df)
    block = np.arange(n) % 8
    for i, (flag, fills) in enumerate((("hasTPC", {}), ("hasTOF", {"beta": -999.0}), ("hasTRD", {}),
                                       ("hasEMCal", {"trackEtaEmcal": -999.0}), ("hasHMPID", {"hmpidSignal": np.nan}))):
        rows = block == i + 1
        df.loc[rows, flag] = False
        for col, v in fills.items():
            df.loc[rows, col] = v
    nan_tof = np.flatnonzero(df.hasTOF.to_numpy() & (block == 7))[:40]
    df.loc[nan_tof, "tofMass"] = np.nan
    path = tmp_path_factory.mktemp("o2data") / "pid_features.root"
    write_table(df, path, root_types=O2_FILE_BRANCHES)
    return path


@pytest.fixture(scope="module")
def o2_run(o2_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("o2runs") / "fse1_full"
    assert main(["fit", RECIPE, "--set", f"data.source={o2_file}", "--set", "trainer.max_epochs=2",
                 "--set", "trainer.batch_size=256", "--set", "evaluation.report=false",
                 "--set", "evaluation.baselines=[bayes_pid,oracle]", "--output", str(out), "--quiet"]) == 0
    return out


def test_fit_on_root_file_records_the_layout(o2_run):
    metrics = json.loads((o2_run / "metrics.json").read_text())
    assert metrics["data"]["layout"] == "o2"
    assert set(metrics["data"]["train"]["group_availability"]) == {"tpc", "tof", "trd", "its", "emcal", "hmpid"}
    assert metrics["data"]["made_absent"] == {"tof": 40}
    assert_beats_quick_baselines(metrics)
    assert {"bayes_pid", "oracle"} <= set(metrics["baselines"])


def test_predict_keeps_every_row_in_order(o2_run, o2_file, tmp_path):
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(o2_run), "--input", str(o2_file), "--output", str(out)]) == 0
    pred = pd.read_parquet(out)
    raw = uproot.open(o2_file)["pid_features"].arrays(["pt", "mcPdg"], library="pd")
    assert len(pred) == len(raw)
    np.testing.assert_array_equal(pred["pt"].to_numpy(), raw["pt"].to_numpy())
    np.testing.assert_allclose(pred[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].sum(axis=1), 1.0, atol=1e-5)


def _tracks(path):
    arrays = uproot.open(path)["pid_features"].arrays(library="np")
    return [{k: v[i] for k, v in arrays.items()} for i in range(len(arrays["pt"]))]


@pytest.fixture(scope="module")
def deploy(o2_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "o2physics"
    assert main(["export", str(o2_run), "--target", "o2physics", "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize("off", [None, *TOGGLES])
def test_o2physics_export_matches_pidx_predict(o2_run, o2_file, deploy, tmp_path, off):
    config = json.loads((deploy / "pid-onnx-inference.json").read_text())["pid-onnx-inference"]
    # std::vector options as O2's DPL reads them (parsed the DPL way in tests/test_o2_config.py)
    assert config["onnxFileNames"] == {"values": ["pid_feature_model.onnx"]}
    assert config["binsPtMl"] == {"values": [-1.0, 9999.0]}
    assert config["loadModelFromCcdb"] is False and config["nClassesMl"] == 4
    session = ort.InferenceSession(str(deploy / config["onnxFileNames"]["values"][0]),
                                   providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[1] == 46 and inp.type == "tensor(float)"

    use = {t: t != off for t in TOGGLES}
    x = np.array([run_inference_vector(t, use) for t in _tracks(o2_file)], dtype=np.float32)
    onnx_batch = session.run(None, {inp.name: x})[-1][:, :4]  # MlResponse: the last output
    rows = np.arange(0, len(x), 29)  # batch 1, as the task calls it
    onnx_single = np.stack([session.run(None, {inp.name: x[i:i + 1]})[-1][0, :4] for i in rows])

    out = tmp_path / "pred.parquet"
    without = ["--without", off.lower()] if off not in (None, "Centrality") else []  # centrality is no model input
    assert main(["predict", str(o2_run), "--input", str(o2_file), "--output", str(out), *without]) == 0
    ours = pd.read_parquet(out)[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
    assert np.max(np.abs(onnx_batch - ours)) <= TOL
    assert np.max(np.abs(onnx_single - ours[rows])) <= TOL
    if off in ("TOF", "TPC"):  # switching a detector off must change the answer somewhere
        assert main(["predict", str(o2_run), "--input", str(o2_file), "--output", str(tmp_path / "all.parquet")]) == 0
        full = pd.read_parquet(tmp_path / "all.parquet")[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
        assert np.max(np.abs(full - ours)) > 1e-3


def test_o2physics_bins_refuse_what_the_task_cannot_run():
    assert o2physics_bins("o2", "full", "p") == [-1.0, 9999.0]
    assert o2physics_bins("o2", [0.5, 3.0], "pt") == [0.5, 3.0]
    assert o2physics_bins("o2", [1.0, math.inf], "pt") == [1.0, 9999.0]
    with pytest.raises(ExportError, match=r"momentum window mid in p.*bins models in pT"):
        o2physics_bins("o2", "mid", "p")
    with pytest.raises(ExportError, match="trained on the o2 layout.*plain onnx target"):
        o2physics_bins("legacy", "full", "p")


def test_test_command_on_a_root_file(o2_run, o2_file, tmp_path):
    out = tmp_path / "m.json"
    assert main(["test", str(o2_run), "--data", str(o2_file), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["n_tracks"] == 9000


# ----------------------------------------------------------------------------- inputs beyond the vector
def extra_input_values(t: dict) -> list:
    """The opt-in inputs for one track, transcribed from their definition (not from pidx): the 7
    nibbles of `itsClusterSizes`, their mean over layers with a cluster × cos λ, then `centFT0C`."""
    v = int(t["itsClusterSizes"]) & 0xFFFFFFFF
    sizes = [(v >> (4 * layer)) & 0xF for layer in range(7)]
    hit = [s for s in sizes if s]
    mean = sum(hit) / len(hit) if hit else 0.0
    return [float(s) for s in sizes] + [mean / math.cosh(float(t["eta"])), float(t["centFT0C"])]


@pytest.fixture(scope="module")
def extras_run(o2_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("o2runs") / "fse1_full_extras"
    assert main(["fit", RECIPE, "--set", f"data.source={o2_file}", "--set", "trainer.max_epochs=2",
                 "--set", "trainer.batch_size=256", "--set", "evaluation.report=false",
                 "--set", "data.extra_inputs=[its_cluster_sizes, centrality]",
                 "--set", "evaluation.baselines=[gbdt, lightgbm, oracle]", "--output", str(out), "--quiet"]) == 0
    return out


def test_extra_inputs_are_model_groups_and_tree_inputs(extras_run, o2_file):
    _, predictor, _ = load_predictor(RunDir.open(extras_run))
    groups = [g.name for g in predictor.preprocessor.layout.groups]
    assert groups == ["tpc", "tof", "trd", "its", "emcal", "hmpid", "its_cluster_sizes", "centrality", "kinematics"]
    metrics = json.loads((extras_run / "metrics.json").read_text())
    # the trees read what the network reads: the vector as the table holds it and the 9 extra columns
    vector_inputs = gbdt_features(load_tracks(o2_file)).shape[1]
    assert metrics["baselines"]["gbdt"]["inputs"] == vector_inputs + 9
    assert metrics["baselines"]["lightgbm"]["inputs"] == vector_inputs + 9


def test_extra_inputs_export_to_plain_onnx_only(extras_run, o2_file, tmp_path):
    with pytest.raises(ExportError, match=r"beyond the 46-value vector.*itsClusterSize0.*centFT0C.*plain onnx target"):
        export_run(extras_run, tmp_path / "o2", target="o2physics", check=False)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(extras_run), "--output", str(onnx_path)]) == 0
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[1] == 46 + 9
    use = {t: True for t in TOGGLES}
    x = np.array([run_inference_vector(t, use) + extra_input_values(t) for t in _tracks(o2_file)], dtype=np.float32)
    onnx_probs = session.run(None, {inp.name: x})[-1][:, :4]
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(extras_run), "--input", str(o2_file), "--output", str(out)]) == 0
    ours = pd.read_parquet(out)[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
    assert np.max(np.abs(onnx_probs - ours)) <= TOL
    # the model reads the centrality: it cannot be switched off as pid-onnx-inference switches off its mask
    assert main(["predict", str(extras_run), "--input", str(o2_file), "--output", str(out),
                 "--without", "centrality"]) != 0

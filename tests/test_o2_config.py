"""`pid-onnx-inference.json` as O2's DPL reads it, and several pT bins in one deployment.

The configuration is parsed here as O2 parses `--configuration json://FILE`, ported from the
AliceO2 source (Framework/Core):

- boost's `read_json`: every JSON scalar becomes the text of a ptree node, arrays become
  children with empty keys;
- `PropertyTreeHelpers::populate(schema, pt, in, ...)`: a scalar option is read with
  `get_value<T>()` (boost's stream translator: the whole text must parse as T; a bool is
  `0`/`1` or `true`/`false`); a vector option is copied as a subtree;
- `ConfigParamRegistry::get<std::vector<T>>` → `vectorFromBranch` (VariantPropertyTreeHelpers.h):
  `basicVectorFromBranch<T>(branch.get_child("values"))`, so a bare JSON list throws
  "No such node (values)".

Then `PidOnnxInference::init` (O2Physics Tools/PIDFeatureExtractor/pidOnnxInference.cxx) with
`MlResponse` (Tools/ML/MlResponse.h): `configure` makes `binsPtMl.size() - 1` models,
`setModelPathsLocal` stops unless `onnxFileNames` has one file per bin, `findBin` picks a
track's model with `upper_bound` over the edges (outside every bin: no model).
"""

import bisect
import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

import pidx
from pidx.cli import main
from pidx.data.files import write_table
from pidx.data.layouts import O2_FILE_BRANCHES
from pidx.errors import ExportError
from pidx.export.o2physics import (
    TASK, TASK_CONFIGURABLES, check_o2physics_config, join_bins, o2physics_config,
)

from test_o2_deploy import RECIPE, TOGGLES, _tracks, run_inference_vector


class BadPath(Exception):
    """boost::property_tree::ptree_bad_path"""


class BadData(Exception):
    """boost::property_tree::ptree_bad_data"""


class Ptree:
    """A boost ptree node: text data and ordered (key, child) pairs."""

    def __init__(self, data: str = "", children=()):
        self.data, self.children = data, list(children)

    def get_child(self, key: str) -> "Ptree":
        for k, child in self.children:
            if k == key:
                return child
        raise BadPath(f"No such node ({key})")


class _Number(str):
    """A JSON number's literal text, which boost's parser keeps as the node's data."""


def read_json(text: str) -> Ptree:
    """boost::property_tree::read_json: NaN/Infinity are not JSON and are refused."""
    def refuse(name):
        raise ValueError(f"boost read_json: {name} is not JSON")

    def convert(v):
        if isinstance(v, _Pairs):
            return Ptree("", [(k, convert(x)) for k, x in v])
        if isinstance(v, list):
            return Ptree("", [("", convert(x)) for x in v])
        if v is True or v is False:
            return Ptree("true" if v else "false")
        if v is None:
            return Ptree("null")
        return Ptree(str(v))

    return convert(json.loads(text, object_pairs_hook=_Pairs, parse_float=_Number, parse_int=_Number,
                              parse_constant=refuse))


class _Pairs(list):
    pass


_INT = re.compile(r"\s*[+-]?\d+\s*")
_DOUBLE = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def get_value(node: Ptree, ctype: str):
    """`node.get_value<T>()` with boost's stream translator: all of the text must be a T."""
    text = node.data
    if ctype == "std::string":
        return text
    if ctype in ("int", "int64_t"):
        bits = 32 if ctype == "int" else 64
        if _INT.fullmatch(text) and -2 ** (bits - 1) <= int(text) < 2 ** (bits - 1):
            return int(text)
    elif ctype == "double":
        if _DOUBLE.fullmatch(text):
            return float(text)
    elif ctype == "bool":
        word = text.strip()
        if word in ("0", "1"):  # s >> bool reads 0/1 first, then retries with boolalpha
            return word == "1"
        if word in ("true", "false"):
            return word == "true"
    raise BadData(f"conversion of data to type \"{ctype}\" failed")


def dpl_options(path: Path) -> dict:
    """The task's options as `PidOnnxInference`'s Configurables receive them from `json://path`."""
    task = read_json(path.read_text()).get_child(TASK)
    values = {}
    for key, ctype in TASK_CONFIGURABLES.items():
        try:
            node = task.get_child(key)
        except BadPath:
            continue  # populate() skips an option the file does not set: its default stays
        if ctype.startswith("std::vector<"):
            element = ctype[len("std::vector<"):-1]
            values[key] = [get_value(child, element) for _, child in node.get_child("values").children]
        else:
            values[key] = get_value(node, ctype)
    return values


def ml_response(options: dict, workdir: Path) -> list[Path]:
    """MlResponse::configure + setModelPathsLocal + init: the model files, one per pT bin."""
    bins, files = options["binsPtMl"], options["onnxFileNames"]
    if len(files) != len(bins) - 1:
        raise RuntimeError("Number of expected models different from the one set! Please check your configurables.")
    paths = [workdir / f for f in files]  # relative paths resolve from the task's working directory
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"cannot open {missing[0]}")
    return paths


def find_bin(bins: list[float], value: float) -> int:
    """MlResponse::findBin."""
    if value < bins[0] or value >= bins[-1]:
        return -1
    return bisect.bisect_right(bins, value) - 1


# ----------------------------------------------------------------------------- the port itself
def test_the_port_refuses_what_dpl_refuses():
    bare = json.dumps({TASK: {"binsPtMl": [-1.0, 9999.0], "onnxFileNames": ["m.onnx"]}})
    with pytest.raises(BadPath, match=r"No such node \(values\)"):
        dpl_options(_write(bare))
    with pytest.raises(BadData):  # an int option written as a float
        dpl_options(_write(json.dumps({TASK: {"nClassesMl": 4.0}})))
    with pytest.raises(BadData):
        dpl_options(_write(json.dumps({TASK: {"useTOF": "yes"}})))
    with pytest.raises(ValueError, match="not JSON"):
        dpl_options(_write('{"pid-onnx-inference": {"binsPtMl": {"values": [-1, Infinity]}}}'))
    ok = dpl_options(_write(json.dumps({TASK: {"nClassesMl": "4", "useTOF": "1", "binsPtMl": {"values": ["0.5", 3]},
                                             "exportCsv": False}})))
    assert ok == {"nClassesMl": 4, "useTOF": True, "binsPtMl": [0.5, 3.0], "exportCsv": False}


def _write(text: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "c.json"
    path.write_text(text)
    return path


def test_written_configuration_is_what_the_task_declares(tmp_path):
    path = tmp_path / "pid-onnx-inference.json"
    path.write_text(json.dumps(o2physics_config([0.1, 1.0, 9999.0], ["a.onnx", "b.onnx"])))
    options = dpl_options(path)
    assert set(options) == set(TASK_CONFIGURABLES) - {"ccdbUrl", "modelPathsCcdb", "timestampCcdb"}
    assert options["binsPtMl"] == [0.1, 1.0, 9999.0] and options["onnxFileNames"] == ["a.onnx", "b.onnx"]
    assert options["loadModelFromCcdb"] is False and options["nClassesMl"] == 4
    assert all(options[f"use{t}"] is True for t in TOGGLES)


def test_configuration_checks_refuse_what_the_task_cannot_read():
    good = o2physics_config([-1.0, 9999.0], ["m.onnx"])
    for key, value, match in (("binsPtMl", [-1.0, 9999.0], "values"), ("nClassesMl", 4.0, "int"),
                              ("useTPC", 1, "bool"), ("onlyInPidx", True, "not an option"),
                              ("binsPtMl", {"values": [1.0, 1.0]}, "increasing"),
                              ("binsPtMl", {"values": [1.0, float("inf")]}, "not a double")):
        bad = {TASK: {**good[TASK], key: value}}
        with pytest.raises(ExportError, match=match):
            check_o2physics_config(bad)
    with pytest.raises(ExportError, match="2 pT bins need as many ONNX files"):
        o2physics_config([0.1, 1.0, 2.0], ["m.onnx"])


def test_join_bins_tiles_or_refuses():
    assert join_bins([("b", [1.0, 9999.0]), ("a", [0.1, 1.0])]) == ([0.1, 1.0, 9999.0], [1, 0])
    with pytest.raises(ExportError, match=r"a ends at pT = 1 GeV/c and b starts at 1.5.*gap"):
        join_bins([("a", [0.1, 1.0]), ("b", [1.5, 3.0])])
    with pytest.raises(ExportError, match=r"a \(pT up to 1.2\) and b \(from 1\) overlap"):
        join_bins([("a", [0.1, 1.2]), ("b", [1.0, 3.0])])
    with pytest.raises(ExportError, match="overlap"):  # a full-range model covers every other bin
        join_bins([("full", [-1.0, 9999.0]), ("b", [1.0, 3.0])])


# ----------------------------------------------------------------------------- deployments
@pytest.fixture(scope="module")
def o2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("o2cfg") / "pid_features.root"
    write_table(pidx.simulate(n_tracks=8000, seed=5), path, root_types=O2_FILE_BRANCHES)
    return path


def _fit(o2_file, out, *sets):
    assert main(["fit", RECIPE, "--set", f"data.source={o2_file}", "--set", "trainer.max_epochs=1",
                 "--set", "trainer.batch_size=256", "--set", "evaluation.report=false",
                 "--set", "evaluation.baselines=[nsigma]", "--set", "model.hidden_dim=16",
                 *[a for s in sets for a in ("--set", s)], "--output", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def pt_runs(o2_file, tmp_path_factory):
    base = tmp_path_factory.mktemp("ptruns")
    return {name: _fit(o2_file, base / name, "data.momentum_variable=pt", f"data.momentum_range={window}")
            for name, window in (("low", "[0.1, 1.0]"), ("high", "[1.0, 9999.0]"))}


def test_one_run_deploys_and_dpl_reads_it(pt_runs, tmp_path):
    out = tmp_path / "single"
    assert main(["export", str(pt_runs["low"]), "--target", "o2physics", "--output", str(out)]) == 0
    options = dpl_options(out / "pid-onnx-inference.json")
    assert options["binsPtMl"] == [0.1, 1.0] and options["onnxFileNames"] == ["pid_feature_model.onnx"]
    assert ml_response(options, out) == [out / "pid_feature_model.onnx"]


def test_adjacent_pt_runs_deploy_as_one_model_per_bin(pt_runs, o2_file, tmp_path):
    out = tmp_path / "bins"
    # given out of order: the deployment is in pT order
    assert main(["export", str(pt_runs["high"]), str(pt_runs["low"]), "--target", "o2physics",
                 "--output", str(out)]) == 0
    options = dpl_options(out / "pid-onnx-inference.json")
    assert options["binsPtMl"] == [0.1, 1.0, 9999.0]
    models = ml_response(options, out)
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in models]
    assert [s["pt_bin"] for s in sidecars] == [[0.1, 1.0], [1.0, 9999.0]]
    # each track goes to the model of its pT bin, as MlResponse::isSelectedMl does, and gets what
    # `pidx predict` of that bin's run gives it
    tracks = _tracks(o2_file)
    use = {t: True for t in TOGGLES}
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in models]
    expected = {}
    for name in ("low", "high"):
        pred = tmp_path / f"{name}.parquet"
        assert main(["predict", str(pt_runs[name]), "--input", str(o2_file), "--output", str(pred)]) == 0
        expected[name] = pd.read_parquet(pred)[["prob_pi", "prob_ka", "prob_pr", "prob_el"]].to_numpy()
    checked = {0: 0, 1: 0}
    for i in range(0, len(tracks), 7):
        b = find_bin(options["binsPtMl"], float(tracks[i]["pt"]))
        if b < 0:
            continue
        x = np.array([run_inference_vector(tracks[i], use)], np.float32)
        got = sessions[b].run(None, {sessions[b].get_inputs()[0].name: x})[-1][0, :4]
        np.testing.assert_allclose(got, expected[("low", "high")[b]][i], atol=1e-5)
        checked[b] += 1
    assert min(checked.values()) > 20
    # the two runs are different models: the bin decides which answer a track gets
    assert np.max(np.abs(expected["low"] - expected["high"])) > 1e-2


def test_deployment_refuses_gaps_overlaps_and_other_layouts(pt_runs, o2_file, tmp_path_factory, tmp_path):
    base = tmp_path_factory.mktemp("badruns")
    gap = _fit(o2_file, base / "gap", "data.momentum_variable=pt", "data.momentum_range=[1.5, 9999.0]")
    legacy_file = base / "legacy.parquet"
    write_table(pidx.simulate(n_tracks=4000, seed=3, layout="legacy"), legacy_file)
    legacy = _fit(legacy_file, base / "legacy", "data.momentum_variable=pt", "data.momentum_range=[1.0, 9999.0]")
    for runs, message in (([pt_runs["low"], gap], "gap"), ([pt_runs["low"], pt_runs["high"], gap], "overlap"),
                          ([pt_runs["low"], legacy], "legacy layout")):
        out = tmp_path / message.replace(" ", "_")
        with pytest.raises(ExportError, match=message):
            pidx.runs.export_o2physics(runs, out, check=False)
        assert not (out / "pid-onnx-inference.json").exists() and not list(out.glob("*.onnx"))
    assert main(["export", str(pt_runs["low"]), str(pt_runs["high"]), "--output", str(tmp_path / "m.onnx")]) == 2

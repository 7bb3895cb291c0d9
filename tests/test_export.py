"""ONNX export: ONNX Runtime equals `pidx predict` for all four models, every missing pattern, batch 1."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort  # in the test extra: a missing install fails, never skips
import pandas as pd
import pytest

import pidx
from pidx.cli import main
from pidx.data.io import encode_missing
from pidx.data.schema import BAYES_COLUMNS, FEATURE_COLUMNS, PROB_COLUMNS, TOF_COLUMNS, TPC_COLUMNS


RECIPES = Path(__file__).parent.parent / "recipes"
FAST = ["--set", "data.n_tracks=8000", "--set", "data.momentum_range=full", "--set", "trainer.max_epochs=2",
        "--set", "trainer.batch_size=256", "--set", "evaluation.report=false", "--set", "evaluation.baselines=[]",
        "--set", "data.layout=legacy", "--quiet"]
TOL = 1e-5


def _fit(tmp_path_factory, recipe, *extra):
    out = tmp_path_factory.mktemp("runs") / recipe
    assert main(["fit", str(RECIPES / f"{recipe}.yaml"), *FAST, *extra, "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    """12,000 tracks, float32-exact, every pattern of (TPC, TOF, Bayes) present/absent, mixed encodings."""
    df = pidx.simulate(n_tracks=50_000, seed=77, tof_scenario="run3", layout="legacy")
    full = df[(df.has_tpc == 1) & (df.has_tof == 1) & df[list(BAYES_COLUMNS)].notna().all(axis=1)]
    df = full.iloc[:12_000].reset_index(drop=True).copy()
    assert len(df) == 12_000
    pattern = np.arange(len(df)) % 8
    for bit, cols, flag in ((1, TPC_COLUMNS, "has_tpc"), (2, TOF_COLUMNS, "has_tof"), (4, BAYES_COLUMNS, None)):
        off = (pattern & bit) > 0
        df.loc[off, list(cols)] = np.nan
        if flag:
            df.loc[off, flag] = 0
    half = np.arange(len(df)) % 16 >= 8  # half NaN, half extractor sentinels (-999, Bayes all 0)
    df.loc[half] = encode_missing(df.loc[half], "sentinel").to_numpy()
    df = df[list(FEATURE_COLUMNS)].astype(np.float32).astype(np.float64)
    path = tmp_path_factory.mktemp("data") / "tracks.parquet"
    df.to_parquet(path)
    return path, df


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_parity(run_dir, tracks, tmp_path):
    path, df = tracks
    model = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--output", str(model)]) == 0
    info = json.loads(model.with_suffix(".json").read_text())
    assert info["input"]["columns"] == list(FEATURE_COLUMNS) and info["output"]["classes"] == ["pi", "ka", "pr", "el"]
    assert info["pidx_version"] == pidx.__version__ and info["check"]["max_abs_diff"] <= TOL
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(run_dir), "--input", str(path), "--output", str(out)]) == 0
    ref = pd.read_parquet(out)[list(PROB_COLUMNS)].to_numpy()
    x = df[info["input"]["columns"]].to_numpy(np.float32)
    session = _session(model)
    got = session.run(["probabilities"], {"tracks": x})[0]
    assert got.shape == (len(df), 4)
    assert np.abs(got - ref).max() <= TOL
    assert ref.std(0).min() > 0.01  # a trained model, not a constant: parity is meaningful
    # batch size 1, the way O2Physics calls it, on every pattern and encoding
    rows = np.arange(0, len(df), 37)
    single = np.concatenate([session.run(["probabilities"], {"tracks": x[i:i + 1]})[0] for i in rows])
    assert np.abs(single - ref[rows]).max() <= TOL
    return got, ref


@pytest.mark.parametrize("recipe, extra", [
    ("simplenn_full", ()), ("dnn_full", ()), ("fse_phase0_full", ()), ("fse_phase1_full", ()),
    ("fse_phase1_full", ("--set", "model.group_embedding=mlp", "--set", "model.activation=silu")),
])
def test_onnx_matches_pidx_predict(recipe, extra, tracks, tmp_path_factory, tmp_path):
    run_dir = _fit(tmp_path_factory, recipe, *extra)
    _check_parity(run_dir, tracks, tmp_path)


def test_ensemble_with_posterior_map_exports(tracks, tmp_path_factory, tmp_path):
    """The graph outputs posteriors: class weights undone, temperature and biases, and abundances."""
    run_dir = _fit(tmp_path_factory, "simplenn_full", "--set", "trainer.ensemble=2", "--set", "loss.name=focal",
                   "--set", "loss.class_weights=balanced")
    posterior = json.loads((run_dir / "calibration.json").read_text())["posterior"]
    assert posterior["temperature"] != pytest.approx(1.0, abs=1e-3)
    assert posterior["class_weights"] != pytest.approx([1.0] * 4)  # the balanced weights, divided out
    cal = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    assert cal["val_nll"] <= cal["val_nll_weights_undone"] <= cal["val_nll_raw"]
    assert cal["test"]["nll"] < cal["test_raw"]["nll"]  # fitted on validation, better on test too
    _check_parity(run_dir, tracks, tmp_path)
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["ensemble_members"] == 2 and info["posterior"]["temperature"] == pytest.approx(posterior["temperature"])
    # re-weighted to other abundances: ONNX and pidx predict still agree, and the output moves
    path, df = tracks
    priors = "pi=0.4,ka=0.3,pr=0.2,el=0.1"
    assert main(["export", str(run_dir), "--output", str(tmp_path / "w.onnx"), "--priors", priors]) == 0
    info = json.loads((tmp_path / "w.json").read_text())
    assert info["posterior"]["priors"] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert main(["predict", str(run_dir), "--input", str(path), "--output", str(tmp_path / "w.parquet"),
                 "--priors", priors]) == 0
    got = _session(tmp_path / "w.onnx").run(["probabilities"],
                                           {"tracks": df[info["input"]["columns"]].to_numpy(np.float32)})[0]
    ref = pd.read_parquet(tmp_path / "w.parquet")[list(PROB_COLUMNS)].to_numpy()
    assert np.abs(got - ref).max() <= TOL
    plain = pd.read_parquet(tmp_path / "pred.parquet")[list(PROB_COLUMNS)].to_numpy()
    assert np.abs(plain - ref).max() > 0.01


def test_export_errors_name_the_problem(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "not a pidx run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "tflite", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "accepted: onnx" in capsys.readouterr().err


def test_model_without_translation_is_refused():
    """Models are final: a new architecture is a new PIDModel, and it needs its own ONNX translation."""
    import jax

    from pidx.data.schema import DEFAULT_LAYOUT
    from pidx.errors import ExportError
    from pidx.export import GraphBuilder, model_graph

    class Doubled(pidx.models.PIDModel):
        layout: object
        num_classes: int
        inner: pidx.SimpleNN

        def __init__(self, layout, *, key):
            self.layout, self.num_classes, self.inner = layout, 4, pidx.SimpleNN(layout, key=key)

        def forward(self, x, mask, state, *, key=None):
            logits, state = self.inner.forward(x, mask, state, key=key)
            return 2 * logits, state

    model = Doubled(DEFAULT_LAYOUT, key=jax.random.PRNGKey(0))
    with pytest.raises(ExportError, match="no ONNX translation for the model Doubled"):
        model_graph(GraphBuilder(), model, None, "f", "m")


def test_extra_detector_group_is_an_extra_input_column(tmp_path):
    """A TRD group (the models guide's example) exports with its columns after the 21."""
    import jax

    from pidx.data.preprocess import Preprocessor
    from pidx.data.schema import DetectorGroup, make_layout
    from pidx.export import export_onnx

    layout = make_layout([DetectorGroup("trd", ("trd_signal", "trd_nsigma_el"), flag="has_trd")])
    scaled = [c for g in layout.groups if g.scale for c in g.columns]
    rng = np.random.default_rng(0)
    pre = Preprocessor(layout, {c: float(rng.normal()) for c in scaled}, {c: float(rng.uniform(0.5, 2)) for c in scaled})
    model, state = pidx.build_model("fse_phase1", layout, key=jax.random.PRNGKey(3), hidden_dim=32)
    info = export_onnx(model, state, pre, tmp_path / "trd.onnx")
    assert info["input"]["columns"] == list(FEATURE_COLUMNS) + ["trd_signal", "trd_nsigma_el", "has_trd"]
    assert info["check"]["tracks"] == 64 * 2 ** 4 and info["check"]["max_abs_diff"] <= TOL

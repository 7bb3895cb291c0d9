"""What a new user meets first: the install gives export, files follow the umask, `--version`,
a did-you-mean that searches every section, error lines that keep their brackets, and the end of
`pidx fit` putting the model beside the best baseline and the ceiling."""

import os
import stat
import tomllib
from pathlib import Path

import pytest

from pidx import __version__
from pidx.cli import main
from pidx.errors import RecipeError
from pidx.evaluation.tables import fit_verdict
from pidx.recipe import load_recipe
from pidx.utils import atomic_dir, atomic_write_text

ROOT = Path(__file__).parent.parent
RECIPE = str(ROOT / "recipes" / "fse_phase1_mid.yaml")


def test_export_needs_nothing_beyond_the_install():
    """README's install is `pip install .`: the ONNX writer and runtime must be core dependencies."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in deps}
    assert {"onnx", "onnxruntime"} <= names


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "ckpt") as d:
            (d / "f").write_text("y")
        target = (tmp_path / "ckpt").resolve()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pidx {__version__}"


@pytest.mark.parametrize("override, suggestion", [
    ("drop_unknown_pdg=true", "data.drop_unknown_pdg"),  # a data key given at the top
    ("max_epochs=3", "trainer.max_epochs"),
    ("data.vz_max=5", "data.selection.vz_max"),  # a key one section deeper
    ("trainer.max_epoch=3", "trainer.max_epochs"),  # a typo in the right section
])
def test_did_you_mean_searches_every_section(override, suggestion):
    with pytest.raises(RecipeError, match=f"did you mean '{suggestion}'"):
        load_recipe(RECIPE, [override])


def test_error_lines_keep_square_brackets(capsys):
    assert main(["export", str(ROOT), "--format", "onnx[export]", "-o", "x.onnx"]) == 2
    assert "'onnx[export]'" in capsys.readouterr().err


def _metrics(model, **baselines):
    return {"test": {"accuracy": model[0], "macro_auc": model[1], "nll": model[2]},
            "baselines": {k: {"accuracy": a, "macro_auc": u, "nll": n} for k, (a, u, n) in baselines.items()}}


def test_fit_verdict_names_the_best_baseline_the_ceiling_and_any_baseline_ahead():
    lines, warnings = fit_verdict(_metrics((0.90, 0.95, 0.30), nsigma=(0.70, 0.93, 0.9), xgboost=(0.89, 0.96, 0.29),
                                           vector_oracle=(0.91, 0.97, 0.25)))
    assert lines == ["model: 0.9000 / 0.9500 / 0.3000 (accuracy / macro AUC / NLL)",
                     "best baseline xgboost: 0.8900 / 0.9600 / 0.2900",
                     "ceiling vector_oracle: 0.9100 / 0.9700 / 0.2500 (model 1.00 pp below)"]
    assert warnings == ["xgboost beats the model on macro AUC (0.9600 against 0.9500) on the same test tracks",
                        "xgboost beats the model on NLL (0.2900 against 0.3000) on the same test tracks"]
    _, none = fit_verdict(_metrics((0.95, 0.99, 0.1), gbdt=(0.9, 0.98, 0.2), oracle=(0.96, 0.995, 0.09)))
    assert none == []  # the ceiling is not a rival


def test_fit_ends_with_the_verdict(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", RECIPE, "--set", "data.n_tracks=20000", "--set", "trainer.max_epochs=1",
                 "--set", "evaluation.report=false", "--set", "evaluation.baselines=[gbdt, vector_oracle]",
                 "--set", "model.hidden_dim=16", "--set", "optimizer.learning_rate=1e-7",  # left untrained
                 "--output", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "best baseline gbdt:" in text and "ceiling vector_oracle:" in text
    assert "warning: gbdt beats the model on accuracy" in text  # an untrained model loses to the tree

"""What the docs promise, each tested: a checkpoint missing a file, --overwrite, --debug, an export whose
check fails writes nothing, EarlyStopping counting the checks inside epochs, TensorBoard's val/ metrics
at each check's step, and the selection's cut-flow per cut."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pidx
from helpers import separable_datamodule
from pidx.cli import main
from pidx.data.io import tracks_from_frame
from pidx.data.schema import DEFAULT_LAYOUT
from pidx.data.selection import TrackSelection
from pidx.errors import CheckpointError, ExportError, RecipeError
from pidx.models import build_model
from pidx.runs import export_run
from pidx.training import CrossEntropy, EarlyStopping, TensorBoardLogger, Trainer, read_meta
from pidx.training.checkpoint import save_checkpoint

RECIPE = str(Path(__file__).parent.parent / "recipes" / "fse_phase1_full.yaml")  # full range: exports to O2Physics
QUICK = ["--set", "data.n_tracks=20000", "--set", "trainer.max_epochs=1", "--set", "evaluation.baselines=[]",
         "--set", "evaluation.report=false", "--set", "model.hidden_dim=16", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims") / "run"
    assert main(["fit", RECIPE, *QUICK, "--output", str(out)]) == 0
    return out


def test_a_file_missing_inside_a_checkpoint_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", trees={"model": {"w": jnp.ones(3)}, "opt_state": {"m": jnp.zeros(2)}},
                           meta={})
    (path / "opt_state.eqx").unlink()
    with pytest.raises(CheckpointError, match=r"opt_state.eqx"):
        read_meta(path)


def test_overwrite_replaces_a_run_directory(run, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run's file")
    assert main(["fit", RECIPE, *QUICK, "--output", str(out)]) == 2  # refused without --overwrite
    assert main(["fit", RECIPE, *QUICK, "--output", str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists() and (out / "metrics.json").is_file()


def test_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epoch: 3}\n")
    assert main(["fit", str(bad)]) == 2 and "Traceback" not in capsys.readouterr().err
    with pytest.raises(RecipeError, match="max_epoch"):  # --debug: the exception itself, with its traceback
        main(["--debug", "fit", str(bad)])


def test_an_export_whose_check_fails_writes_nothing(run, tmp_path):
    with pytest.raises(ExportError, match="nothing was written"):
        export_run(run, tmp_path / "m.onnx", tolerance=-1.0)  # no difference is below a negative tolerance
    assert not list(tmp_path.iterdir())
    with pytest.raises(ExportError, match="nothing was written"):
        export_run(run, tmp_path / "o2", target="o2physics", tolerance=-1.0)
    assert not list((tmp_path / "o2").iterdir())


def _fit(callbacks, root, **kw):
    model, state = build_model("simplenn", DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), hidden=(32, 16))
    t = Trainer(max_epochs=3, batch_size=256, loss=CrossEntropy(), enable_progress_bar=False, default_root_dir=root,
                val_check_interval=5, callbacks=callbacks, **kw)
    t.fit(model, separable_datamodule(), state=state)
    return t


def test_early_stopping_patience_counts_the_checks_inside_epochs(tmp_path):
    # the validation NLL falls at every check, so "max" never improves after the first: patience 2 is
    # used up by the checks at steps 10 and 15 of the first epoch, and the stop takes effect at its end
    stop = EarlyStopping(monitor="val/nll", mode="max", patience=2)
    t = _fit([stop], tmp_path)
    assert len(t.history) == 1 and t.should_stop and "did not improve for 2" in t.stop_reason
    assert [r["epoch_step"] for r in t.step_validations] == [5, 10, 15]


def test_tensorboard_logs_val_metrics_at_each_checks_step(tmp_path):
    from test_long_runs import _events

    t = _fit([TensorBoardLogger()], tmp_path, max_time=None)
    events = _events(tmp_path / "tensorboard")
    nll_steps = sorted(s for tag, s, _ in events if tag == "val/nll")
    inside = [r["step"] for r in t.step_validations]
    ends = [16 * (e + 1) for e in range(len(t.history))]
    assert inside and nll_steps == sorted(inside + ends)
    by_step = {s: v for tag, s, v in events if tag == "val/nll"}
    for r in t.step_validations:
        assert by_step[r["step"]] == pytest.approx(r["val/nll"], rel=1e-6)


def test_the_cut_flow_counts_each_cut(tmp_path):
    tracks = pidx.simulate(n_tracks=5000, seed=8)
    cuts = TrackSelection(dca_xy_max=0.105, dca_z_max=0.12)
    selected = tracks_from_frame(tracks, selection=cuts)
    xy, z = np.abs(tracks["dcaXY"].to_numpy()) < 0.105, np.abs(tracks["dcaZ"].to_numpy()) < 0.12
    assert selected.summary["selection"] == {"dca_xy_max": int((~xy).sum()), "dca_z_max": int((xy & ~z).sum())}
    assert len(selected) == int((xy & z).sum()) and (~z).any()

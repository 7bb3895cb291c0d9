"""Faults: SIGKILL and exact resume, kill during a save, Ctrl-C, broken checkpoints, fuzzed inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pidx.cli import main
from pidx.errors import CheckpointError, DataError, RecipeError
from pidx.recipe import Recipe, load_recipe, validate_recipe
from pidx.training import read_meta

RECIPE = str(Path(__file__).parent.parent / "recipes" / "simplenn_mid.yaml")
SMALL = ["--set", "data.n_tracks=20000", "--set", "trainer.batch_size=128", "--set", "model.hidden=[32, 16]",
         "--set", "evaluation.report=false", "--set", "evaluation.baselines=[]", "--quiet"]


def fit_cmd(out, epochs, *extra):
    return [sys.executable, "-m", "pidx.cli", "fit", RECIPE, *SMALL, "--set", f"trainer.max_epochs={epochs}",
            "--output", str(out), *extra]


# The recipe's callbacks plus one that makes every epoch last a second, as real epochs do: a signal sent
# once epoch 2 of 6 is logged then always lands while the fit runs (the weights do not change).
SLOW = ["--set", "callbacks=" + json.dumps(load_recipe(RECIPE).to_dict()["callbacks"]
                                           + [{"helpers:SlowEpochs": {"seconds": 1.0}}])]
TESTS_ON_PATH = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                          os.environ.get("PYTHONPATH")]))}


def signalled_fit(out, *extra, **popen):
    """The 6-epoch fit with slow epochs, started to be signalled once its second epoch is logged."""
    proc = subprocess.Popen(fit_cmd(out, 6, *SLOW, *extra), env=TESTS_ON_PATH, **popen)
    wait_for_epochs(out / "checkpoints" / "last", 2, proc)
    return proc


def wait_for_epochs(path: Path, n: int, proc, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        try:
            if read_meta(path)["epochs_completed"] >= n:
                return
        except CheckpointError:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError(f"{path} never reached {n} epochs")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    subprocess.run(fit_cmd(out, 6), check=True, timeout=300)
    return out


def test_sigkill_then_resume_last_gives_identical_weights(straight, tmp_path):
    out = tmp_path / "run"
    proc = signalled_fit(out, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = read_meta(out / "checkpoints" / "last")["epochs_completed"]
    assert 2 <= done < 6
    subprocess.run(fit_cmd(out, 6, "--resume", "last"), check=True, timeout=300)
    a = (straight / "checkpoints" / "last" / "model.eqx").read_bytes()
    b = (out / "checkpoints" / "last" / "model.eqx").read_bytes()
    assert a == b
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == list(range(6))


def test_ctrl_c_saves_checkpoint_exits_130_and_resumes_exactly(straight, tmp_path):
    out = tmp_path / "run"
    proc = signalled_fit(out, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "state saved to" in err and "Traceback" not in err
    interrupted = out / "checkpoints" / "interrupted"
    meta = read_meta(interrupted)
    assert meta["epochs_completed"] >= 2
    subprocess.run(fit_cmd(out, 6, "--resume", str(interrupted)), check=True, timeout=300)
    assert (straight / "checkpoints" / "last" / "model.eqx").read_bytes() == \
        (out / "checkpoints" / "last" / "model.eqx").read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_batch_system_signal_saves_and_resume_auto_continues_exactly(straight, tmp_path, sig):
    """What SLURM does before a preemption (SIGTERM, or SIGUSR1 with --signal): the job saves, exits
    128 + the signal's number, and the same command line with --resume auto ends where an
    uninterrupted run ends, bit for bit."""
    out = tmp_path / "run"
    proc = signalled_fit(out, "--resume", "auto", stderr=subprocess.PIPE, text=True)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "state saved to" in err and "--resume auto" in err and "Traceback" not in err
    assert read_meta(out / "checkpoints" / "interrupted")["global_step"] >= \
        read_meta(out / "checkpoints" / "last")["global_step"]
    subprocess.run(fit_cmd(out, 6, *SLOW, "--resume", "auto"), env=TESTS_ON_PATH, check=True, timeout=300)
    assert (straight / "checkpoints" / "last" / "model.eqx").read_bytes() == \
        (out / "checkpoints" / "last" / "model.eqx").read_bytes()
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == list(range(6))


def test_resume_auto_starts_fresh_without_a_checkpoint_and_refuses_a_finished_run(tmp_path):
    out = tmp_path / "run"
    cmd = fit_cmd(out, 1, "--resume", "auto", "--set", "data.n_tracks=4000")
    cmd.remove("--quiet")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    said = " ".join((proc.stdout + proc.stderr).split())  # rich wraps lines
    assert proc.returncode == 0 and "no checkpoint to continue from; starting simplenn_mid afresh" in said, said
    assert (out / "metrics.json").is_file()
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "recipe.yaml").write_text("seed: 1\n")
    (finished / "metrics.json").write_text("{}")
    assert main(["fit", RECIPE, "--output", str(finished), "--resume", "auto", "--quiet"]) == 2
    assert (finished / "metrics.json").read_text() == "{}"  # never replaced


SAVER = r"""
import sys, jax, numpy as np
from pidx.training.checkpoint import save_checkpoint
big = {"w": np.random.default_rng(0).normal(size=(400, 1000)).astype(np.float32)}
i = 0
while True:
    i += 1
    save_checkpoint(sys.argv[1], trees={"model": {"w": big["w"] + i}}, meta={"i": i})
    print(i, flush=True)
"""


def test_kill_during_save_never_leaves_a_half_written_checkpoint(tmp_path):
    target = tmp_path / "ckpt" / "last"
    for delay in (0.0, 0.013, 0.031, 0.057, 0.09, 0.15):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip()  # at least one save done: now kill at an arbitrary moment
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        meta = read_meta(target)  # complete: meta present, every checksum matches
        assert meta["i"] >= 1
        visible = [p.name for p in target.parent.iterdir() if not p.name.startswith(".")]
        assert visible == ["last"]


def test_broken_checkpoint_gives_one_line_cli_error(straight, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    best = json.loads((run / "metrics.json").read_text())["training"]["best_checkpoint"]
    weights = run / best / "model.eqx"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert main(["test", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.eqx: corrupted or truncated" in err and "Traceback" not in err


def test_nan_loss_stops_with_epoch_and_step(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", RECIPE, *SMALL, "--set", "trainer.max_epochs=4", "--set", "optimizer.learning_rate=1e30",
                 "--set", "loss.name=cross_entropy", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "training loss is nan at epoch" in err and "step" in err


def test_fewer_tracks_than_one_batch_trains_one_full_batch(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", RECIPE, *SMALL, "--set", "data.n_tracks=3000", "--set", "trainer.batch_size=100000",
                 "--set", "trainer.max_epochs=1", "--output", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["training"]["steps_per_epoch"] == 1
    assert m["training"]["batch_size"] == m["data"]["train"]["n_tracks"]


# ----------------------------------------------------------------------------- fuzzing
COLUMNS = ["pt", "eta", "phi", "dca_xy", "dca_z", "tpc_signal", "tpc_nsigma_pi", "has_tpc", "has_tof",
           "tof_beta", "bayes_prob_pi", "mc_pdg", "junk"]
cell = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3000, 3000),
                 st.sampled_from(["", "abc", "1.5", "nan"]), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(COLUMNS), unique=True, max_size=len(COLUMNS)), st.data())
def test_fuzz_tables_only_raise_data_error(cols, data):
    from pidx.data import validate_tracks
    from pidx.simulation import simulate

    n = data.draw(st.integers(0, 6))
    base = _base_table()
    df = base.head(n).copy() if n else base.head(0).copy()
    for c in cols:
        df[c] = pd.Series([data.draw(cell) for _ in range(n)], dtype=object) if n else pd.Series([], dtype=object)
    drop = data.draw(st.lists(st.sampled_from(list(base.columns)), max_size=3))
    df = df.drop(columns=[c for c in drop if c in df])
    try:
        table = validate_tracks(df, source="fuzz.csv", drop_unknown_pdg=data.draw(st.booleans()),
                                on_invalid=data.draw(st.sampled_from(["error", "drop"])))
    except DataError as exc:
        assert str(exc)
    else:
        assert len(table) <= n and np.isfinite(table.frame["pt"]).all()
    _ = simulate


_BASE = {}


def _base_table():
    if "t" not in _BASE:
        from pidx.simulation import simulate

        _BASE["t"] = simulate(layout="legacy", n_tracks=50, seed=1)
    return _BASE["t"]


recipe_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8)
sections = st.sampled_from(["seed", "name", "data", "model", "loss", "optimizer", "trainer", "callbacks",
                            "evaluation", "bogus"])
known_keys = st.sampled_from(["momentum_range", "n_tracks", "name", "hidden_dim", "patience", "EarlyStopping",
                              "max_epochs", "gamma", "alpha", "class_weights", "baselines", "source", "zzz"])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(sections, st.one_of(recipe_values, st.dictionaries(known_keys, recipe_values, max_size=4),
                                           st.lists(st.dictionaries(known_keys, recipe_values, max_size=2),
                                                    max_size=2)), max_size=5))
def test_fuzz_recipes_only_raise_recipe_error(raw):
    try:
        cfg = validate_recipe(raw)
    except RecipeError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, Recipe) and validate_recipe(cfg.to_dict()) == cfg

"""The run layer: one decision of the result weights, whatever callbacks a recipe has."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pidx.recipe import validate_recipe
from pidx import runs
from pidx.runs import RunDir, fit_recipe, load_predictor, make_datamodule

ES_LOSS = {"EarlyStopping": {"monitor": "val/loss", "mode": "min", "patience": 10}}
MC_BAL = {"ModelCheckpoint": {"monitor": "val/balanced_accuracy", "mode": "max"}}
MC_ACC = {"ModelCheckpoint": {"monitor": "val/accuracy", "mode": "max"}}


@pytest.mark.parametrize("callbacks, source, monitor, mode", [
    ([ES_LOSS], "early_stopping", "val/loss", "min"),
    ([MC_BAL], "model_checkpoint", "val/balanced_accuracy", "max"),
    ([ES_LOSS, MC_ACC], "early_stopping", "val/loss", "min"),  # different monitors: EarlyStopping's weights
    ([], "last_epoch", None, None),
], ids=["early-stopping-only", "checkpoint-only", "different-monitors", "no-callbacks"])
def test_metrics_predictions_and_reloads_describe_the_same_weights(tmp_path, callbacks, source, monitor, mode):
    recipe = validate_recipe({
        "name": "result", "seed": 5, "callbacks": callbacks,
        "data": {"n_tracks": 8000, "momentum_range": "mid", "cache": False},
        "model": {"name": "simplenn", "hidden": [32, 16], "dropout": 0.2},
        "trainer": {"max_epochs": 5, "batch_size": 128},
        "optimizer": {"learning_rate": 3e-3},
        "evaluation": {"baselines": ["nsigma"], "report": False}})
    run = RunDir.create("result", tmp_path / "run")
    metrics = fit_recipe(recipe, run, quiet=True)
    training = metrics["training"]
    assert training["result_from"] == source
    history = run.history()
    if monitor is None:
        assert training["best_epoch"] == len(history) - 1
    else:
        values = [row[monitor] for row in history]
        assert training["best_epoch"] == int(np.argmin(values) if mode == "min" else np.argmax(values))

    # the checkpoint metrics.json names holds the tested weights: reloading reproduces every number
    assert (run / training["best_checkpoint"]).is_dir()
    again = runs.test_run(run.path)
    assert again["accuracy"] == metrics["test"]["accuracy"]
    assert again["balanced_accuracy"] == metrics["test"]["balanced_accuracy"]
    _, predictor, ckpt = load_predictor(run)
    assert ckpt == run / training["best_checkpoint"]
    stored = pd.read_parquet(run / RunDir.PREDICTIONS)[[f"model_prob_{c}" for c in ("pi", "ka", "pr", "el")]]
    dm = make_datamodule(recipe).setup()
    np.testing.assert_allclose(predictor.probs(dm.test), stored.to_numpy(), atol=1e-6)

"""`pidx fit`: train → decide the result → test → calibrate → baselines → report, in one pass.

Everything stays in memory from the first step to the report: the data module's splits,
the result's weights (one `Predictor`), the test probabilities. Each file of the run
directory is written once, and none is read back.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ..data.datamodule import TrackDataModule
from ..data.schema import CLASS_NAMES
from ..evaluation.baselines import add_oracle_gaps, run_baselines
from ..evaluation.calibration import calibration_summary, fit_temperature, negative_log_likelihood
from ..evaluation.importance import importance_and_ablation
from ..evaluation.report import ReportHeader, test_predictions_frame, write_report
from ..recipe import Recipe
from ..training.predictor import Predictor, apply_temperature
from ..training.trainer import Trainer
from .build import data_log_line, make_datamodule, make_model, make_trainer
from .result import RunResult, decide_result
from .rundir import RunDir

TEST_KEYS = ("accuracy", "balanced_accuracy", "macro_auc", "micro_auc", "n_tracks", "per_class",
             "confusion_normalized", "loss")


def majority_baseline(train_labels, test_labels) -> float:
    """Accuracy of always predicting the train split's most frequent class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(CLASS_NAMES)).argmax())
    return float(np.mean(np.asarray(test_labels) == majority))


def fit_recipe(recipe: Recipe, run: RunDir, *, resume: str | Path | None = None, quiet: bool = False) -> dict:
    """Train, test and write the run directory; returns metrics.json's content.

    **Arguments:**

    - `recipe`: the validated recipe.
    - `run`: the (new or resumed) run directory.
    - `resume`: a checkpoint directory to continue from, or `"last"` (the run's `checkpoints/last`).
    - `quiet`: no data log line and no progress bar.
    """
    run.write_recipe(recipe)
    dm = make_datamodule(recipe).setup()
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(data_log_line(recipe, dm), highlight=False, markup=False, soft_wrap=True)
    model, state = make_model(recipe, dm.layout)
    steps = max(1, dm.train.num_tracks // min(recipe.trainer.batch_size, dm.train.num_tracks))
    trainer = make_trainer(recipe, run.path, quiet=quiet, steps_per_epoch=steps)
    ckpt = None if resume is None else run.checkpoint("last") if str(resume) == "last" else Path(resume)
    trainer.fit(model, dm, state=state, ckpt_path=ckpt)

    result = decide_result(trainer, run)
    test = trainer.test()
    predictor = Predictor(trainer.model, trainer.model_state, dm.preprocessor,
                          eval_batch_size=recipe.trainer.eval_batch_size)
    metrics = {"recipe": recipe.name, "test": {k: test[k] for k in TEST_KEYS},
               "majority_baseline": majority_baseline(dm.train.label, dm.test.label),
               "training": training_summary(trainer, result, run), "data": dm.summary()}
    entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, trainer.last_probs,
                                              np.asarray(trainer.class_weights), test_metrics=metrics["test"])
    metrics = run.write_metrics({**metrics, **entries})
    if recipe.evaluation.report:
        write_run_report(recipe, run, metrics, dm, predictor, trainer.history, result.checkpoint, predictions)
    return metrics


def training_summary(trainer: Trainer, result: RunResult, run: RunDir) -> dict:
    s = trainer.summary
    return {"epochs_run": trainer.current_epoch, "stop_reason": trainer.stop_reason, "best_epoch": result.epoch,
            "result_from": result.source, "best_checkpoint": run.relative(result.checkpoint),
            "wall_s": s.get("wall_s"), "compile_s": s.get("compile_s"), "train_s": s.get("train_s"),
            "tracks_per_s": s.get("tracks_per_s"), "batch_size": s.get("batch_size"),
            "steps_per_epoch": s.get("steps_per_epoch"), "device": jax.devices()[0].platform}


def evaluate_in_memory(recipe: Recipe, run: RunDir, dm: TrackDataModule, predictor: Predictor, test_probs,
                       class_weights, *, test_metrics: dict):
    """Calibration (temperature fitted on the validation split), baselines on the same test tracks,
    oracle gaps and `test_predictions.parquet`.

    Returns the `calibration` and `baselines` entries of metrics.json and the per-track
    predictions frame; `test_metrics` gains the oracle gaps.
    """
    ev = recipe.evaluation
    calibration = calibrate(recipe, run, dm, predictor, test_probs)
    baselines, outputs = run_baselines(dm.tables, ev.baselines, class_weights=class_weights, seed=recipe.seed,
                                       gbdt_max_iter=ev.gbdt_max_iter)
    add_oracle_gaps(test_metrics, baselines)
    predictions = test_predictions_frame(dm.tables["test"], np.asarray(dm.test.p), test_probs, outputs)
    run.write_predictions(predictions)
    return {"calibration": calibration, "baselines": baselines}, predictions


def calibrate(recipe: Recipe, run: RunDir, dm: TrackDataModule, predictor: Predictor, test_probs) -> dict:
    """ECE and reliability on the test split; with `evaluation.temperature_scaling`, fit T on the
    validation split (never the test split), write calibration.json and measure the test split again."""
    bins = recipe.evaluation.calibration_bins
    labels = np.asarray(dm.test.label)
    out = {"test": calibration_summary(test_probs, labels, bins)}
    if recipe.evaluation.temperature_scaling:
        val_probs, val_labels = predictor.raw_probs(dm.val), np.asarray(dm.val.label)
        t = fit_temperature(val_probs, val_labels)
        fitted = {"temperature": t, "fitted_on": "validation split", "val_tracks": len(val_labels),
                  "val_nll_before": negative_log_likelihood(val_probs, val_labels),
                  "val_nll_after": negative_log_likelihood(apply_temperature(val_probs, t), val_labels)}
        run.write_calibration(fitted)
        out.update(fitted)
        out["test_calibrated"] = calibration_summary(apply_temperature(test_probs, t), labels, bins)
    return out


def report_header(recipe: Recipe, run: RunDir, checkpoint) -> ReportHeader:
    return ReportHeader(name=recipe.name, model=recipe.model.name, source=recipe.data.source,
                        momentum_range=str(recipe.data.momentum_range_yaml),
                        checkpoint=run.relative(checkpoint))


def write_run_report(recipe: Recipe, run: RunDir, metrics: dict, dm: TrackDataModule, predictor: Predictor,
                     history: list[dict], checkpoint, predictions, *, max_tracks: int | None = None) -> Path:
    """The report of a run from data in hand (importance and ablation on the test split)."""
    max_tracks = recipe.evaluation.report_max_tracks if max_tracks is None else max_tracks
    _, importance, ablation = importance_and_ablation(predictor.raw_probs, dm.test, predictor.layout,
                                                      max_tracks=max_tracks)
    return write_report(run / RunDir.REPORT, report_header(recipe, run, checkpoint), metrics=metrics,
                        predictions=predictions, history=history, importance=importance, ablation=ablation)


__all__ = ["majority_baseline", "fit_recipe", "training_summary", "evaluate_in_memory", "calibrate",
           "report_header", "write_run_report"]

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
from ..data.group import ProcessGroup
from ..data.layouts import get_layout
from ..data.table import TrackTable
from ..evaluation.baselines import add_oracle_gaps, decision_metrics, run_baselines
from ..evaluation.calibration import calibration_summary, fit_posterior_map, negative_log_likelihood
from ..evaluation.importance import importance_and_ablation
from ..evaluation.shift import input_shift
from ..evaluation.report import ReportHeader, test_predictions_frame, write_report
from ..evaluation.working_points import WorkingPoint, evaluate_working_point
from ..recipe import Recipe
from ..errors import RecipeError
from ..training.posterior import PosteriorMap
from ..training.reweight import domain_weights
from ..training.predictor import Predictor
from ..training.parallel import barrier, to_local
from ..training.trainer import Trainer
from .build import data_log_line, make_datamodule, make_model, make_trainer
from .result import RunResult, decide_result
from .rundir import RunDir



def majority_baseline(train_class_counts, test_labels) -> float:
    """Accuracy of always predicting the train split's most frequent class."""
    majority = int(np.asarray(train_class_counts).argmax())
    return float(np.mean(np.asarray(test_labels) == majority))


def reweight_train_split(recipe: Recipe, dm: TrackDataModule) -> dict | None:
    """With `loss.adaptation: reweight`, weight each train track by a domain classifier's density ratio
    data/MC (`pidx.training.reweight`); what the weights say goes to metrics.json's `adaptation`."""
    loss = recipe.loss
    if loss.adaptation == "none":
        return None
    if loss.adaptation in ("dann", "cdan"):
        return {"method": loss.adaptation, "reversal_weight": loss.adaptation_weight}
    if dm.streamed:
        raise RecipeError("'loss.adaptation: reweight' needs the train split in memory; this data is streamed "
                          "(over data.memory_budget): raise the budget or use loss.adaptation: dann or cdan")
    found = domain_weights(dm.train, dm.target, clip=loss.reweight_clip, seed=recipe.seed)
    dm.train_weight = found.weights
    return {"method": "reweight", **found.summary()}


def fit_recipe(recipe: Recipe, run: RunDir, *, resume: str | Path | None = None, quiet: bool = False) -> dict:
    """Train, test and write the run directory; returns metrics.json's content.

    **Arguments:**

    - `recipe`: the validated recipe.
    - `run`: the (new or resumed) run directory.
    - `resume`: a checkpoint directory to continue from, or `"last"` (the run's `checkpoints/last`).
    - `quiet`: no data log line and no progress bar.
    """
    group = ProcessGroup.current()
    writer = group.is_first  # under jax.distributed, process 0 writes the run directory
    if writer:
        run.write_recipe(recipe)
    dm = make_datamodule(recipe).setup()
    if not quiet and writer:
        from rich.console import Console

        Console(stderr=True).print(data_log_line(recipe, dm), highlight=False, markup=False, soft_wrap=True)
    adaptation = reweight_train_split(recipe, dm)
    model, state = make_model(recipe, dm.layout)
    trainer = make_trainer(recipe, run.path, quiet=quiet)
    ckpt = None if resume is None else run.checkpoint("last") if str(resume) == "last" else Path(resume)
    trainer.fit(model, dm, state=state, ckpt_path=ckpt)

    barrier("pidx fit: checkpoints written")  # every process may read the result checkpoint process 0 wrote
    result = decide_result(trainer, run)
    test = trainer.test()
    metrics = {"recipe": recipe.name, "test": {"loss": test["loss"]},
               "majority_baseline": majority_baseline(dm.class_counts, dm.test.label),
               "training": training_summary(trainer, result, run), "data": dm.summary(),
               **({"adaptation": adaptation} if adaptation else {})}
    if not writer:  # the others trained and tested with it; the rest is process 0's alone
        metrics["test"] = test
    # The others wait here until process 0 has written the run: had they exited, they would wait in
    # jax.distributed's shutdown barrier, whose timeout (300 s) process 0's baselines and report can
    # outlast, and its failure aborts every process. A failure of process 0's is raised in all.
    return group.together("writing the run directory",
                          lambda: write_run(recipe, run, dm, trainer, result, metrics) if writer else metrics)


def write_run(recipe: Recipe, run: RunDir, dm: TrackDataModule, trainer: Trainer, result: RunResult,
              metrics: dict) -> dict:
    """Process 0's part after training: posteriors, baselines, metrics.json and the report.

    **Arguments:**

    - `recipe`, `run`, `dm`: the fit's recipe, run directory and data.
    - `trainer`: the trained `Trainer`; `result`: which checkpoint the run's result is.
    - `metrics`: metrics.json's entries so far (its `test` entry gains the test metrics).
    """
    predictor = Predictor(to_local(trainer.model), to_local(trainer.model_state), dm.preprocessor,
                          eval_batch_size=recipe.trainer.eval_batch_size)
    entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, trainer.last_probs,
                                              np.asarray(trainer.class_weights), test_metrics=metrics["test"])
    if dm.target is not None:  # what tells the target sample from the MC, before any correction
        test = test_arrays(dm)
        entries["shift"] = input_shift(test.features, test.group_mask, dm.target.features, dm.target.group_mask,
                                       dm.layout, seed=recipe.seed)
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
            "steps_per_epoch": s.get("steps_per_epoch"), "device": jax.devices()[0].platform,
            "devices": s.get("devices"), "processes": s.get("processes")}


def evaluate_in_memory(recipe: Recipe, run: RunDir, dm: TrackDataModule, predictor: Predictor, raw_test_probs,
                       class_weights, *, test_metrics: dict):
    """Posteriors (the map fitted on the validation split, set on `predictor`), test metrics of
    the posteriors, calibration, working points, baselines on the same test tracks, oracle gaps
    and `test_predictions.parquet`.

    Returns the `calibration`, `baselines` (and `working_points`) entries of metrics.json and the
    per-track predictions frame; `test_metrics` gains the classification metrics and oracle gaps.
    """
    ev = recipe.evaluation
    raw_val_probs = predictor.raw_probs(dm.val)
    posterior, fitted = fit_posteriors(recipe, dm, raw_val_probs, class_weights)
    run.write_calibration(fitted)
    predictor.posterior = posterior
    as_posteriors = (lambda raw: raw) if posterior is None else posterior
    known_labels, known_test_probs = np.asarray(dm.test.label), as_posteriors(raw_test_probs)
    bins = ev.calibration_bins
    calibration = {**fitted, "test": calibration_summary(known_test_probs, known_labels, bins),
                   "test_raw": calibration_summary(raw_test_probs, known_labels, bins)}
    # other species kept as contamination: label -1, after the π/K/p/e tracks, in every purity
    tables, splits = with_contamination(dm, predictor, {"val": as_posteriors(raw_val_probs),
                                                        "test": known_test_probs})
    (val_labels, val_probs, _), (labels, test_probs, test_p) = splits["val"], splits["test"]
    test_metrics.update(decision_metrics(labels, test_probs, dm.class_counts))
    entries = {"calibration": calibration}
    if ev.working_points:
        entries["working_points"] = [
            evaluate_working_point(WorkingPoint.parse(text), val_probs, val_labels, test_probs, labels, test_p)
            for text in ev.working_points]
    baselines, outputs = run_baselines(tables, ev.baselines, class_weights=class_weights, seed=recipe.seed,
                                       gbdt_max_iter=ev.gbdt_max_iter,
                                       extra_columns=get_layout(dm.tables["test"].layout).extra_columns(dm.layout))
    rows = dm.sample_positions.get("test") if getattr(dm, "streamed", False) else None
    if rows is None:
        add_oracle_gaps(test_metrics, baselines)
    else:  # streamed: the baselines ran on the test split's seeded sample; compare on the same tracks
        test_metrics["baseline_sample"] = {"tracks": int(len(rows)),
                                           **decision_metrics(labels[rows], test_probs[rows], dm.class_counts)}
        add_oracle_gaps(test_metrics["baseline_sample"], baselines)
        test_probs = test_probs[rows]
    p = test_p if rows is None else test_p[rows]
    predictions = test_predictions_frame(tables["test"], p, test_probs, outputs)
    run.write_predictions(predictions)
    return {**entries, "baselines": baselines}, predictions


def with_contamination(dm: TrackDataModule, predictor: Predictor, probs: dict):
    """The validation and test splits with the other species' tracks kept as contamination appended
    (label -1; `dm.contamination`, empty when there are none): the tables the baselines read, and per
    split (labels, posteriors, momentum) with the predictor's posteriors of the appended tracks."""
    tables, splits = dict(dm.tables), {}
    for name, split_probs in probs.items():
        arrays = getattr(dm, name)
        labels, p = np.asarray(arrays.label), np.asarray(arrays.p)
        other = dm.contamination.get(name)
        if other is not None:
            tables[name] = TrackTable.concat([dm.tables[name], other])
            other_arrays = dm.to_arrays(other)
            labels = np.concatenate([labels, np.asarray(other_arrays.label)])
            split_probs = np.concatenate([split_probs, predictor.probs(other_arrays)])
            p = np.concatenate([p, np.asarray(other_arrays.p)])
        splits[name] = (labels, split_probs, p)
    return tables, splits


def fit_posteriors(recipe: Recipe, dm: TrackDataModule, raw, class_weights):
    """The `PosteriorMap` of `evaluation.posterior`, fitted on the network's raw probabilities `raw`
    of the validation split (never the test split), and what calibration.json records of it.
    `none`: no map (raw outputs)."""
    method = recipe.evaluation.posterior
    val_labels = np.asarray(dm.val.label)
    counts = np.asarray(dm.class_counts, np.float64)
    fitted = {"method": method, "fitted_on": "validation split", "val_tracks": int(len(val_labels)),
              "val_nll_raw": negative_log_likelihood(raw, val_labels)}
    if method == "none":
        return None, {**fitted, "posterior": None}
    priors = counts / counts.sum() if np.all(counts > 0) else None  # an absent species: no re-weighting
    posterior = fit_posterior_map(raw, val_labels, class_weights=class_weights, train_priors=priors, method=method)
    return posterior, {**fitted, "posterior": posterior.to_dict(),
                       "val_nll_weights_undone": negative_log_likelihood(PosteriorMap.undoing(class_weights)(raw),
                                                                         val_labels),
                       "val_nll": negative_log_likelihood(posterior(raw), val_labels)}


def report_header(recipe: Recipe, run: RunDir, checkpoint) -> ReportHeader:
    return ReportHeader(name=recipe.name, model=recipe.model.name, source=recipe.data.source,
                        momentum_range=str(recipe.data.momentum_range_yaml),
                        checkpoint=run.relative(checkpoint))


def test_arrays(dm: TrackDataModule):
    """The test split's arrays in memory: the split itself, or the seeded sample of a streamed one."""
    return dm.to_arrays(dm.tables["test"]) if getattr(dm, "streamed", False) else dm.test


def write_run_report(recipe: Recipe, run: RunDir, metrics: dict, dm: TrackDataModule, predictor: Predictor,
                     history: list[dict], checkpoint, predictions, *, max_tracks: int | None = None) -> Path:
    """The report of a run from data in hand (importance and ablation on the test split)."""
    max_tracks = recipe.evaluation.report_max_tracks if max_tracks is None else max_tracks
    streamed = getattr(dm, "streamed", False)
    test = test_arrays(dm)
    _, importance, ablation, spread = importance_and_ablation(predictor.probs, test, predictor.layout,
                                                              max_tracks=max_tracks)
    train = dm.to_arrays(dm.tables["train"]) if streamed else dm.train
    # as many train tracks as the test split has (a seeded sample), for the train-against-test output check
    rows = np.sort(np.random.default_rng(recipe.seed).choice(
        train.num_tracks, min(train.num_tracks, len(predictions)), replace=False))
    train = type(train)(*(a[rows] for a in train))  # the sample only leaves the device
    return write_report(run / RunDir.REPORT, report_header(recipe, run, checkpoint), metrics=metrics,
                        predictions=predictions, history=history, importance=importance, ablation=ablation,
                        importance_spread=spread, train_outputs=(predictor.probs(train), np.asarray(train.label)),
                        inputs=(dm.tables["test"].frame, dm.tables["test"].labels, predictor.layout))


__all__ = ["majority_baseline", "fit_recipe", "write_run", "training_summary", "evaluate_in_memory",
           "with_contamination",
           "fit_posteriors",
           "report_header", "write_run_report"]

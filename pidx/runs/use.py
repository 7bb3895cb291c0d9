"""Using a finished run: test it, predict with it, report on it, export it, compare runs.

Each of these opens the run directory, loads the run's result as a `Predictor` (the
checkpoint metrics.json names, its preprocessing statistics, the posterior map fitted on
the validation split) and applies it; none trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.io import load_tracks
from ..data.schema import CLASS_NAMES
from ..errors import PidxError, RecipeError
from ..evaluation.compare import comparison_rows
from ..evaluation.priors import estimate_priors
from ..training.losses import compute_class_weights
from ..training.metrics import classification_metrics
from ..training.checkpoint import read_meta
from ..training.posterior import abundances, corrected_nll
from ..utils import atomic_write_json
from .build import load_predictor, make_datamodule
from .fit import evaluate_in_memory, with_contamination, write_run_report
from .predict import in_momentum_range, read_input_chunks
from .rundir import RunDir, finite


def read_priors(text: str | Path) -> dict[str, float]:
    """Species abundances from `pi=0.8,ka=0.12,pr=0.07,el=0.01` or from a file `pidx priors` wrote."""
    text = str(text)
    path = Path(text)
    if "=" not in text and path.is_file():
        try:
            data = json.loads(path.read_text())
            values = data["priors"] if isinstance(data, dict) and "priors" in data else data
            return dict(zip(CLASS_NAMES, abundances(values)))
        except (ValueError, TypeError) as exc:
            raise RecipeError(f"{path}: not a priors file ({exc}); write one with `pidx priors`") from None
    try:
        pairs = dict(part.split("=", 1) for part in text.split(",") if part.strip())
        return dict(zip(CLASS_NAMES, abundances({k.strip(): float(v) for k, v in pairs.items()})))
    except ValueError as exc:
        raise RecipeError(f"--priors {text!r}: {exc}; give pi=…,ka=…,pr=…,el=… (summing to 1) or a file "
                          "written by `pidx priors`") from None


def _labelled(recipe, predictor, data, tree: str | None):
    """(labels, posteriors, what loading counted) of the run's test split, or of the labelled file
    `data` in the run's momentum range; other species (label -1) as the recipe's policy says."""
    dm = make_datamodule(recipe)
    if data is None:
        dm.setup()
        _, splits = with_contamination(dm, predictor, {"test": predictor.probs(dm.test)})
        labels, probs, _ = splits["test"]
        return labels, probs, {k: v for k, v in dm.summary().items() if k in _COUNTED}
    pre = predictor.preprocessor
    table = dm.select_momentum(load_tracks(data, track_layout=pre.track_layout, tree=tree or dm.tree,
                                           layout=pre.layout, selection=dm.selection, sentinels=dm.sentinels,
                                           other_species=dm.species_policy, on_invalid=dm.on_invalid,
                                           implausible=dm.implausible))
    counted = {k: v for k, v in table.summary.items() if k in _COUNTED}
    if table.dropped:
        counted["dropped"] = table.dropped
    return np.asarray(table.labels), predictor.predict_table(table), counted


_COUNTED = ("made_absent", "implausible", "other_species", "dropped", "trees", "selection")


def test_run(run_dir: str | Path, data: str | Path | None = None, *, priors=None, tree: str | None = None) -> dict:
    """Metrics of a run's posteriors on its test split, or on another labelled file (with `priors`:
    re-weighted to those abundances; `tree`: the ROOT tree(s) of `data`, default the recipe's).
    Tracks of other species kept as contamination count in every purity; `data_summary` says what
    loading counted (other species per species, values no detector produces, groups made absent)."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run, priors=priors)
    labels, probs, counted = _labelled(recipe, predictor, data, tree)
    out = classification_metrics(labels, probs)
    out.update({"checkpoint": str(ckpt), "data": str(data) if data else "test split", "data_summary": counted,
                "posterior": None if predictor.posterior is None else predictor.posterior.to_dict()})
    return finite(out)


def validate_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Metrics of a run's checkpoint (default: the one its test used) on its validation split: `nll` is
    the monitored `val/nll` (the raw output, class weights divided out); the rest are those of the
    posteriors, whose map was fitted on this split (so they flatter it: the test split is the judge)."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run, checkpoint)
    val = make_datamodule(recipe).setup().val
    labels, raw = np.asarray(val.label), predictor.raw_probs(val)
    out = classification_metrics(labels, raw if predictor.posterior is None else predictor.posterior(raw))
    out.update({"nll": corrected_nll(raw, labels, read_meta(ckpt)["class_weights"]), "checkpoint": str(ckpt),
                "data": "validation split"})
    return finite(out)


def estimate_file_priors(run_dir: str | Path, input_path: str | Path, output_path: str | Path | None = None, *,
                         tree: str | None = None) -> dict:
    """Species abundances of an unlabelled file by label-shift EM on the run's posteriors (tracks in
    the run's momentum range, read chunk by chunk; `tree` as `predict_file`'s), written as JSON for
    `--priors` when `output_path` is given."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run)
    posterior = predictor.posterior
    if posterior is None or posterior.train_priors is None:
        raise PidxError(f"{run}: has no posterior map with training abundances (evaluation.posterior: none, or a "
                        "species absent from the train split); abundances cannot be estimated with it")
    parts = []
    for table, _ in read_input_chunks(recipe, predictor, input_path, tree=tree):
        keep = in_momentum_range(recipe, table) & ~table.unscored
        if keep.any():
            parts.append(predictor.probs(predictor.arrays(table))[keep])
    if not parts:
        raise PidxError(f"{input_path}: no track in the run's momentum range {recipe.data.momentum_range_yaml}")
    fit = estimate_priors(np.concatenate(parts), posterior.train_priors)
    out = {"priors": dict(zip(CLASS_NAMES, fit["priors"])), "method": "label-shift EM (Saerens et al. 2002)",
           "iterations": fit["iterations"], "converged": fit["converged"], "tracks": fit["tracks"],
           "input": str(input_path), "run": str(run), "checkpoint": str(ckpt),
           "train_priors": dict(zip(CLASS_NAMES, posterior.train_priors)),
           "momentum_range": recipe.data.momentum_range_yaml}
    if output_path is not None:
        atomic_write_json(output_path, out)
    return out


def report_run(run_dir: str | Path, *, max_tracks: int = 20_000, on_rebuild=None) -> Path:
    """Write `<run>/report/`; a run that lacks its baselines or test predictions gets them first
    (written to metrics.json and test_predictions.parquet). `on_rebuild()` is called before that."""
    run = RunDir.open(run_dir)
    metrics = run.metrics()
    if "test" not in metrics:
        raise PidxError(f"{run}: has no test metrics; the run did not finish (resume it with pidx fit --resume)")
    recipe, predictor, ckpt = load_predictor(run)
    dm = make_datamodule(recipe).setup()
    predictions = run.predictions()
    if "baselines" not in metrics or predictions is None:
        if on_rebuild is not None:
            on_rebuild()
        weights = compute_class_weights(recipe.loss.class_weights, dm.class_counts)  # as the Trainer did
        entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, predictor.raw_probs(dm.test), weights,
                                                  test_metrics=metrics["test"])
        metrics = run.write_metrics({**metrics, **entries})
    return write_run_report(recipe, run, metrics, dm, predictor, run.history(), ckpt, predictions,
                            max_tracks=max_tracks)


def compare_runs(run_dirs) -> list[dict]:
    """`pidx compare`'s rows: one per run and per baseline in its metrics.json."""
    runs = []
    for path in run_dirs:
        run = RunDir.open(path)
        recipe = run.recipe()
        runs.append((run.path, recipe.model.name, recipe.data.momentum_range, run.metrics()))
    return comparison_rows(runs)


__all__ = ["read_priors", "test_run", "validate_run", "estimate_file_priors", "report_run", "compare_runs"]

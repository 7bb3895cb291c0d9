"""Using a finished run: test it, predict with it, report on it, export it, compare runs.

Each of these opens the run directory, loads the run's result as a `Predictor` (the
checkpoint metrics.json names, its preprocessing statistics, the posterior map fitted on
the validation split) and applies it; none trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.datamodule import resolve_momentum_range
from ..data.io import load_tracks, read_tracks_raw, tracks_from_frame, write_table
from ..data.schema import CLASS_NAMES, PROB_COLUMNS
from ..errors import PidxError, RecipeError
from ..evaluation import uncertainty as unc
from ..evaluation.compare import comparison_rows
from ..evaluation.priors import estimate_priors
from ..evaluation.working_points import WorkingPoint, evaluate_working_point
from ..training.losses import compute_class_weights
from ..training.metrics import classification_metrics
from ..training.checkpoint import read_meta
from ..training.posterior import abundances, corrected_nll
from ..utils import atomic_write_json
from .build import load_predictor, make_datamodule
from .fit import evaluate_in_memory, write_run_report
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


def _labelled_arrays(recipe, predictor, data):
    """The run's test split, or the labelled file `data` in the run's momentum range."""
    dm = make_datamodule(recipe)
    if data is None:
        return dm.setup().test
    pre = predictor.preprocessor
    table = dm.select_momentum(load_tracks(data, track_layout=pre.track_layout, tree=dm.tree, layout=pre.layout,
                                           selection=dm.selection, sentinels=dm.sentinels,
                                           drop_unknown_pdg=dm.drop_unknown_pdg, on_invalid=dm.on_invalid))
    return predictor.arrays(table)


def test_run(run_dir: str | Path, data: str | Path | None = None, *, priors=None) -> dict:
    """Metrics of a run's posteriors on its test split, or on another labelled file (with `priors`:
    re-weighted to those abundances)."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run, priors=priors)
    arrays = _labelled_arrays(recipe, predictor, data)
    out = classification_metrics(np.asarray(arrays.label), predictor.probs(arrays))
    out.update({"checkpoint": str(ckpt), "data": str(data) if data else "test split",
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


def estimate_file_priors(run_dir: str | Path, input_path: str | Path, output_path: str | Path | None = None) -> dict:
    """Species abundances of an unlabelled file by label-shift EM on the run's posteriors (tracks in
    the run's momentum range), written as JSON for `--priors` when `output_path` is given."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run)
    posterior = predictor.posterior
    if posterior is None or posterior.train_priors is None:
        raise PidxError(f"{run}: has no posterior map with training abundances (evaluation.posterior: none, or a "
                        "species absent from the train split); abundances cannot be estimated with it")
    table, _ = _input_table(recipe, predictor, input_path)
    in_range = _in_range(recipe, table)
    if not in_range.any():
        raise PidxError(f"{input_path}: no track in the run's momentum range {recipe.data.momentum_range_yaml}")
    probs = predictor.probs(predictor.arrays(table))[in_range]
    fit = estimate_priors(probs, posterior.train_priors)
    out = {"priors": dict(zip(CLASS_NAMES, fit["priors"])), "method": "label-shift EM (Saerens et al. 2002)",
           "iterations": fit["iterations"], "converged": fit["converged"], "tracks": fit["tracks"],
           "input": str(input_path), "run": str(run), "checkpoint": str(ckpt),
           "train_priors": dict(zip(CLASS_NAMES, posterior.train_priors)),
           "momentum_range": recipe.data.momentum_range_yaml}
    if output_path is not None:
        atomic_write_json(output_path, out)
    return out


def _input_table(recipe, predictor, input_path, disabled_groups: tuple[str, ...] = ()):
    """(validated table, raw frame) of an input file, labels not needed."""
    d, pre = recipe.data, predictor.preprocessor
    raw, dtypes, what = read_tracks_raw(input_path, tree=d.tree)
    return tracks_from_frame(raw, source=what, track_layout=pre.track_layout, dtypes=dtypes, layout=pre.layout,
                             disabled_groups=tuple(disabled_groups), require_label=False, sentinels=d.sentinels,
                             on_invalid="error"), raw


def _in_range(recipe, table) -> np.ndarray:
    lo, hi = resolve_momentum_range(recipe.data.momentum_range)
    value = table.momentum if recipe.data.momentum_variable == "p" else table.frame["pt"].to_numpy(np.float64)
    return (value > lo) & (value < hi)


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
                 uncertainty: bool = False, mc_dropout: int = 0, seed: int = 0,
                 disabled_groups: tuple[str, ...] = (), priors=None, select: tuple[str, ...] = ()) -> dict:
    """Write every input row, in order, with prob_* columns, `pred` and `in_momentum_range`.

    **Arguments:**

    - `run_dir`, `input_path`, `output_path`: the run, the tracks, the output table.
    - `uncertainty`: add `entropy` (and for an ensemble `mutual_information`, `disagreement`).
    - `mc_dropout`: if > 0, that many dropout samples per track give `mc_entropy`,
      `mutual_information` and `disagreement` (single models with dropout).
    - `seed`: seed of the MC dropout masks.
    - `disabled_groups`: O2 layout; detector groups treated as absent on every track, as
      pidOnnxInference's `use*` options do (`tpc`, `tof`, `trd`, `its`, `emcal`, `hmpid`).
    - `priors`: species abundances the posteriors are re-weighted to (default the recipe's
      `evaluation.priors`, else the training sample's).
    - `select`: working points such as `ka:purity=0.95`: a boolean column each, the threshold
      chosen on the run's validation split; the efficiency and purity reached on its test split
      (overall and per momentum bin) are returned under `selections`.

    The prob_* columns are posteriors (the run's posterior map; what `pidx export` writes);
    `entropy` is theirs, while `mutual_information` and `disagreement` come from the members'
    (or samples') own probabilities.
    """
    if mc_dropout < 0:
        raise RecipeError(f"--mc-dropout must be >= 0 samples, got {mc_dropout}")
    try:
        points = [WorkingPoint.parse(text) for text in select]
    except ValueError as exc:
        raise RecipeError(f"--select: {exc}") from None
    recipe, predictor, ckpt = load_predictor(RunDir.open(run_dir), priors=priors, recipe_priors=True)
    if mc_dropout and predictor.is_ensemble:
        raise RecipeError("--mc-dropout samples a single model; this run is an ensemble, whose members "
                          "already give mutual_information and disagreement with --uncertainty")
    table, raw = _input_table(recipe, predictor, input_path, disabled_groups)
    arrays = predictor.arrays(table)
    probs = predictor.probs(arrays)
    out = raw.copy()
    for i, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, i].astype(np.float32)
    out["pred"] = np.asarray(CLASS_NAMES)[probs.argmax(1)]
    out["in_momentum_range"] = _in_range(recipe, table)
    selections = _selections(recipe, predictor, points) if points else []
    for point, sel in zip(points, selections):
        out[point.column] = out["in_momentum_range"].to_numpy() & (probs[:, point.index] >= sel["threshold"])
    if uncertainty or mc_dropout:
        out = _add_uncertainty(out, probs, predictor, arrays, mc_dropout, seed)
    write_table(out, output_path)
    return {"rows": len(out), "checkpoint": str(ckpt), "output": str(output_path),
            "priors": None if predictor.posterior is None or predictor.posterior.priors is None
            else dict(zip(CLASS_NAMES, predictor.posterior.priors)),
            "selections": selections, "columns": [c for c in out.columns if c not in raw.columns]}


def _selections(recipe, predictor, points) -> list[dict]:
    """Each working point's threshold on the run's validation split and its performance on the test
    split, with the predictor's posteriors (tracks weighted to its abundances when re-weighted)."""
    dm = make_datamodule(recipe).setup()
    posterior = predictor.posterior
    ratio = None if posterior is None or posterior.priors is None else \
        np.asarray(posterior.priors) / np.asarray(posterior.train_priors)
    val_probs, test_probs = predictor.probs(dm.val), predictor.probs(dm.test)
    return [evaluate_working_point(p, val_probs, np.asarray(dm.val.label), test_probs, np.asarray(dm.test.label),
                                   np.asarray(dm.test.p), abundance_ratio=ratio) for p in points]


def _add_uncertainty(out, probs, predictor, arrays, mc_dropout: int, seed: int):
    out["entropy"] = unc.entropy(probs).astype(np.float32)
    if mc_dropout:
        samples = unc.mc_dropout_probs(predictor.model, predictor.state, arrays.features, arrays.group_mask,
                                       samples=mc_dropout, seed=seed)
    elif predictor.is_ensemble:
        samples = predictor.member_probs(arrays)
    else:
        return out
    u = unc.sample_uncertainty(samples)
    if mc_dropout:
        out["mc_entropy"] = u["entropy"].astype(np.float32)
    out["mutual_information"] = u["mutual_information"].astype(np.float32)
    out["disagreement"] = u["disagreement"].astype(np.float32)
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


__all__ = ["read_priors", "test_run", "validate_run", "estimate_file_priors", "predict_file", "report_run", "compare_runs"]

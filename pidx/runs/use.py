"""Using a finished run: test it, predict with it, report on it, export it, compare runs.

Each of these opens the run directory, loads the run's result as a `Predictor` (the
checkpoint metrics.json names, its preprocessing statistics, the fitted temperature)
and applies it; none trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.datamodule import resolve_momentum_range
from ..data.io import load_tracks, read_tracks_raw, tracks_from_frame, write_table
from ..data.schema import CLASS_NAMES, PROB_COLUMNS
from ..errors import PidxError, RecipeError
from ..evaluation import uncertainty as unc
from ..evaluation.compare import comparison_rows
from ..training.losses import compute_class_weights
from ..training.metrics import classification_metrics
from .build import load_predictor, make_datamodule
from .fit import evaluate_in_memory, write_run_report
from .rundir import RunDir, finite


def test_run(run_dir: str | Path, data: str | Path | None = None) -> dict:
    """Metrics of a run's model on its test split, or on another labelled file."""
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run)
    dm = make_datamodule(recipe)
    if data is None:
        arrays = dm.setup().test
    else:
        pre = predictor.preprocessor
        table = dm.select_momentum(load_tracks(data, track_layout=pre.track_layout, tree=dm.tree, layout=pre.layout,
                                               selection=dm.selection, sentinels=dm.sentinels,
                                               drop_unknown_pdg=dm.drop_unknown_pdg, on_invalid=dm.on_invalid))
        arrays = predictor.arrays(table)
    out = classification_metrics(np.asarray(arrays.label), predictor.probs(arrays))
    out.update({"checkpoint": str(ckpt), "data": str(data) if data else "test split",
                "temperature": predictor.temperature})
    return finite(out)


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
                 uncertainty: bool = False, mc_dropout: int = 0, seed: int = 0,
                 disabled_groups: tuple[str, ...] = ()) -> dict:
    """Write every input row, in order, with prob_* columns, `pred` and `in_momentum_range`.

    **Arguments:**

    - `run_dir`, `input_path`, `output_path`: the run, the tracks, the output table.
    - `uncertainty`: add `entropy` (and for an ensemble `mutual_information`, `disagreement`).
    - `mc_dropout`: if > 0, that many dropout samples per track give `mc_entropy`,
      `mutual_information` and `disagreement` (single models with dropout).
    - `seed`: seed of the MC dropout masks.
    - `disabled_groups`: O2 layout; detector groups treated as absent on every track, as
      pidOnnxInference's `use*` options do (`tpc`, `tof`, `trd`, `its`, `emcal`, `hmpid`).

    The prob_* columns are the deterministic prediction (the one `pidx export` writes),
    temperature-scaled when the run fitted a temperature; `entropy` is theirs, while
    `mutual_information` and `disagreement` come from the members' (or samples') own
    probabilities.
    """
    if mc_dropout < 0:
        raise RecipeError(f"--mc-dropout must be >= 0 samples, got {mc_dropout}")
    run = RunDir.open(run_dir)
    recipe, predictor, ckpt = load_predictor(run)
    if mc_dropout and predictor.is_ensemble:
        raise RecipeError("--mc-dropout samples a single model; this run is an ensemble, whose members "
                          "already give mutual_information and disagreement with --uncertainty")
    d, pre = recipe.data, predictor.preprocessor
    raw, dtypes, what = read_tracks_raw(input_path, tree=d.tree)
    table = tracks_from_frame(raw, source=what, track_layout=pre.track_layout, dtypes=dtypes, layout=pre.layout,
                              disabled_groups=tuple(disabled_groups), require_label=False,
                              sentinels=d.sentinels, on_invalid="error")
    arrays = predictor.arrays(table)
    probs = predictor.probs(arrays)
    out = raw.copy()
    for i, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, i].astype(np.float32)
    out["pred"] = np.asarray(CLASS_NAMES)[probs.argmax(1)]
    lo, hi = resolve_momentum_range(d.momentum_range)
    value = table.momentum if d.momentum_variable == "p" else table.frame["pt"].to_numpy(np.float64)
    out["in_momentum_range"] = (value > lo) & (value < hi)
    if uncertainty or mc_dropout:
        out = _add_uncertainty(out, probs, predictor, arrays, mc_dropout, seed)
    write_table(out, output_path)
    return {"rows": len(out), "checkpoint": str(ckpt), "output": str(output_path),
            "temperature": predictor.temperature, "columns": [c for c in out.columns if c not in raw.columns]}


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
        test_probs = predictor.raw_probs(dm.test)
        weights = compute_class_weights(recipe.loss.class_weights, dm.class_counts)  # as the Trainer did
        metrics["test"].update(classification_metrics(np.asarray(dm.test.label), test_probs))
        entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, test_probs, weights,
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


__all__ = ["test_run", "predict_file", "report_run", "compare_runs"]

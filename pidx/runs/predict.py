"""`pidx predict`: posteriors for every row of a file of any size, streamed chunk by chunk.

The input is read in chunks (ROOT baskets through uproot, Parquet row groups, CSV chunks; the
trees `--tree` names one after the other), each chunk is validated, scored and appended to the
output, which is renamed onto its path only when complete. Memory does not grow with the file:
one chunk of input and output at a time. Rows keep their order and none is dropped: a row no
model can score (a missing or implausible momentum) gets NaN probabilities and is counted.
Labels are never read: a file of any species predicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.files import TableWriter, expand_sources
from ..data.io import tracks_from_frame
from ..data.schema import CLASS_NAMES, PROB_COLUMNS
from ..data.stream import count_rows, iter_pieces
from ..errors import RecipeError
from ..evaluation import uncertainty as unc
from ..evaluation.working_points import WorkingPoint, evaluate_working_point
from .build import load_predictor, make_datamodule
from .fit import with_contamination
from .rundir import RunDir

DEFAULT_CHUNK_TRACKS = 32_768
# On a CPU, small evaluation batches are faster (they stay in cache) and keep XLA's buffers small:
# measured on 2 M tracks, batch 4096 beside 65536 took 34 s against 62 s and 0.98 against 2.3 GB.
CPU_EVAL_BATCH = 4096


def in_momentum_range(recipe, table) -> np.ndarray:
    """Whether each track of `table` is inside the run's momentum range, as its data module selects."""
    return make_datamodule(recipe).in_momentum_range(table)


def read_input_chunks(recipe, predictor, input_path, *, tree: str | None = None, disabled_groups=(),
                      chunk_tracks: int = DEFAULT_CHUNK_TRACKS):
    """(validated table, raw frame) per chunk of an input file, directory or glob, in order; labels are
    not read, and rows that cannot be scored are kept (`table.unscored`)."""
    d, pre = recipe.data, predictor.preprocessor
    tree = tree or d.tree
    start = 0
    for path in expand_sources(input_path):
        for frame, dtypes in iter_pieces(path, tree=tree, rows=chunk_tracks, as_float32=False):
            where = f"{path} (rows {start:,}–{start + len(frame) - 1:,})"
            table = tracks_from_frame(frame, source=where, track_layout=pre.track_layout, dtypes=dtypes,
                                      layout=pre.layout, disabled_groups=tuple(disabled_groups), require_label=False,
                                      read_labels=False, sentinels=d.sentinels, on_invalid="keep",
                                      implausible=d.implausible)
            start += len(frame)
            yield table, frame


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
                 uncertainty: bool = False, mc_dropout: int = 0, seed: int = 0,
                 disabled_groups: tuple[str, ...] = (), priors=None, select: tuple[str, ...] = (),
                 tree: str | None = None, chunk_tracks: int = DEFAULT_CHUNK_TRACKS,
                 on_progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Write every input row, in order, with prob_* columns, `pred` and `in_momentum_range`.

    **Arguments:**

    - `run_dir`, `input_path`, `output_path`: the run, the tracks (a file, a directory or a glob;
      labels not needed), the output table (.parquet, .csv or .root), written when complete.
    - `uncertainty`: add `entropy` (and for an ensemble `mutual_information`, `disagreement`).
    - `mc_dropout`: if > 0, that many dropout samples per track give `mc_entropy`,
      `mutual_information` and `disagreement` (single models with dropout).
    - `seed`: seed of the MC dropout masks (each chunk folds in its first row).
    - `disabled_groups`: O2 layout; detector groups treated as absent on every track, as
      pidOnnxInference's `use*` options do (`tpc`, `tof`, `trd`, `its`, `emcal`, `hmpid`).
    - `priors`: species abundances the posteriors are re-weighted to (default the recipe's
      `evaluation.priors`, else the training sample's).
    - `select`: working points such as `ka:purity=0.95`: a boolean column each, the threshold
      chosen on the run's validation split; the efficiency and purity reached on its test split
      (overall and per momentum bin) are returned under `selections`.
    - `tree`: the ROOT tree(s) to read (default the recipe's `data.tree`; a glob such as
      `DF_*/pid_features` reads every match).
    - `chunk_tracks`: rows read, scored and written at a time.
    - `on_progress`: called with (rows done, total rows or None) after each chunk.

    The prob_* columns are posteriors (the run's posterior map; what `pidx export` writes); `pred`
    is their argmax's species, empty where a row could not be scored (NaN probabilities). What
    validation did (groups made absent, values no detector produces, rows not scored) is returned
    under `counts`.
    """
    if mc_dropout < 0:
        raise RecipeError(f"--mc-dropout must be >= 0 samples, got {mc_dropout}")
    if chunk_tracks < 1:
        raise RecipeError(f"chunk_tracks must be >= 1, got {chunk_tracks}")
    try:
        points = [WorkingPoint.parse(text) for text in select]
    except ValueError as exc:
        raise RecipeError(f"--select: {exc}") from None
    import jax

    batch = CPU_EVAL_BATCH if jax.default_backend() == "cpu" else None
    recipe, predictor, ckpt = load_predictor(RunDir.open(run_dir), priors=priors, recipe_priors=True,
                                             eval_batch_size=batch)
    if mc_dropout and predictor.is_ensemble:
        raise RecipeError("--mc-dropout samples a single model; this run is an ensemble, whose members "
                          "already give mutual_information and disagreement with --uncertainty")
    selections = _selections(recipe, predictor, points) if points else []
    total = count_rows(expand_sources(input_path), tree=tree or recipe.data.tree)
    counts = {"made_absent": {}, "implausible": {}, "unscored": 0}
    added: list[str] = []
    start, done = time.perf_counter(), 0
    with TableWriter(output_path) as writer:
        for table, raw in read_input_chunks(recipe, predictor, input_path, tree=tree, disabled_groups=disabled_groups,
                                            chunk_tracks=chunk_tracks):
            out = _score_chunk(recipe, predictor, table, raw, points, selections, uncertainty, mc_dropout,
                               seed + done)
            _add_counts(counts, table)
            added = [c for c in out.columns if c not in raw.columns]
            writer.write(out)
            done += len(out)
            if on_progress is not None:
                on_progress(done, total)
    seconds = time.perf_counter() - start
    return {"rows": done, "checkpoint": str(ckpt), "output": str(output_path), "seconds": seconds,
            "tracks_per_s": done / seconds if seconds > 0 else None,
            "priors": None if predictor.posterior is None or predictor.posterior.priors is None
            else dict(zip(CLASS_NAMES, predictor.posterior.priors)),
            "selections": selections, "columns": added, "counts": counts}


def _score_chunk(recipe, predictor, table, raw: pd.DataFrame, points, selections, uncertainty: bool,
                 mc_dropout: int, seed: int) -> pd.DataFrame:
    arrays = predictor.arrays(table)
    probs = predictor.probs(arrays)
    scored = ~table.unscored
    probs = np.where(scored[:, None], probs, np.nan)
    out = raw.copy()
    for i, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, i].astype(np.float32)
    out["pred"] = np.where(scored, np.asarray(CLASS_NAMES)[np.nan_to_num(probs).argmax(1)], "")
    out["in_momentum_range"] = in_momentum_range(recipe, table) & scored
    for point, sel in zip(points, selections):
        with np.errstate(invalid="ignore"):
            out[point.column] = out["in_momentum_range"].to_numpy() & (probs[:, point.index] >= sel["threshold"])
    if uncertainty or mc_dropout:
        out = _add_uncertainty(out, probs, predictor, arrays, mc_dropout, seed)
    return out


def _add_counts(counts: dict, table) -> None:
    """Add what validating one chunk counted to the totals."""
    for key, found in (("made_absent", table.summary.get("made_absent", {})),
                       ("implausible", table.summary.get("implausible", {}).get("columns", {}))):
        for k, v in found.items():
            counts[key][k] = counts[key].get(k, 0) + v
    counts["unscored"] += int(table.unscored.sum())


def _selections(recipe, predictor, points) -> list[dict]:
    """Each working point's threshold on the run's validation split and its performance on the test
    split, with the predictor's posteriors (tracks weighted to its abundances when re-weighted), other
    species kept as contamination counted in the purity."""
    dm = make_datamodule(recipe).setup()
    posterior = predictor.posterior
    ratio = None if posterior is None or posterior.priors is None else \
        np.asarray(posterior.priors) / np.asarray(posterior.train_priors)
    _, splits = with_contamination(dm, predictor, {"val": predictor.probs(dm.val), "test": predictor.probs(dm.test)})
    (val_labels, val_probs, _), (test_labels, test_probs, test_p) = splits["val"], splits["test"]
    return [evaluate_working_point(p, val_probs, val_labels, test_probs, test_labels, test_p, abundance_ratio=ratio)
            for p in points]


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


__all__ = ["DEFAULT_CHUNK_TRACKS", "in_momentum_range", "read_input_chunks", "predict_file"]

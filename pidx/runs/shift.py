"""`pidx shift`: how a file of collision data differs from the MC a run was trained on, before any
correction: which detector group's inputs tell them apart, which inputs moved, and the species
abundances the run's posteriors see in the data (label-shift EM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.schema import CLASS_NAMES
from ..errors import PidxError
from ..evaluation.priors import estimate_priors
from ..evaluation.shift import input_shift
from ..utils import atomic_write_json
from .build import load_predictor, make_datamodule
from .predict import read_input_chunks
from .rundir import RunDir


def shift_run(run_dir: str | Path, input_path: str | Path, output_path: str | Path | None = None, *,
              tree: str | None = None, max_tracks: int = 200_000) -> dict:
    """The MC-vs-data shift of a run: its test split (MC) against `input_path` (data, labels unread).

    **Arguments:**

    - `run_dir`: a run directory written by `pidx fit`.
    - `input_path`: the data: a file, directory or glob in the run's layout.
    - `output_path`: where to write the result as JSON (optional).
    - `tree`: the ROOT tree of `input_path` (default the recipe's).
    - `max_tracks`: at most this many tracks of each sample (a seeded subsample).
    """
    run = RunDir.open(run_dir)
    recipe, predictor, _ = load_predictor(run)
    dm = make_datamodule(recipe)
    tables, probs = [], []
    for table, _ in read_input_chunks(recipe, predictor, input_path, tree=tree):
        keep = np.flatnonzero(dm.in_momentum_range(table) & ~table.unscored)
        if len(keep):
            arrays = predictor.arrays(table.subset(keep))
            tables.append((np.asarray(arrays.features), np.asarray(arrays.group_mask)))
            probs.append(predictor.probs(arrays))
    if not tables:
        raise PidxError(f"{input_path}: no track in the run's momentum range {recipe.data.momentum_range_yaml}")
    rng = np.random.default_rng(recipe.seed)
    data_x, data_m = (np.concatenate(parts) for parts in zip(*tables))
    mc = predictor.arrays(dm.setup().tables["test"])
    mc_x, mc_m = np.asarray(mc.features), np.asarray(mc.group_mask)
    pick = lambda n: np.sort(rng.permutation(n)[:max_tracks])  # noqa: E731
    d_rows, m_rows = pick(len(data_x)), pick(len(mc_x))
    out = input_shift(mc_x[m_rows], mc_m[m_rows], data_x[d_rows], data_m[d_rows], predictor.preprocessor.layout,
                      seed=recipe.seed)
    posterior = predictor.posterior
    if posterior is not None and posterior.train_priors is not None:
        fit = estimate_priors(np.concatenate(probs), posterior.train_priors)
        out["abundances"] = {"data": dict(zip(CLASS_NAMES, fit["priors"])), "converged": fit["converged"],
                             "mc_train": dict(zip(CLASS_NAMES, posterior.train_priors))}
    out.update({"run": str(run), "input": str(input_path), "momentum_range": recipe.data.momentum_range_yaml})
    if output_path is not None:
        atomic_write_json(output_path, out)
    return out


__all__ = ["shift_run"]

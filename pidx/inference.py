"""Use a finished run directory: load its model, test it, predict with it.

`pidx test`, `pidx predict`, `pidx export` and `pidx report` rebuild the model from the run's
`recipe.yaml`, load its best checkpoint and apply the checkpoint's preprocessing statistics
(and the fitted temperature, if the run has one) to new data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.datamodule import arrays_from_table
from .data.io import load_tracks, write_table
from .data.preprocess import Preprocessor
from .data.schema import CLASS_NAMES, PROB_COLUMNS
from .errors import CheckpointError, RecipeError
from .training.checkpoint import load_tree, read_meta

RECIPE_FILE, METRICS_FILE, CALIBRATION_FILE = "recipe.yaml", "metrics.json", "calibration.json"


def run_temperature(run_dir: str | Path) -> float | None:
    """The run's fitted temperature, or None if it has none."""
    import json

    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable calibration file ({exc}); delete it or re-run pidx fit") from None


def calibrated(run_dir: str | Path, probs: np.ndarray) -> tuple[np.ndarray, float | None]:
    """`probs` with the run's fitted temperature applied (unchanged if it has none), and the temperature."""
    temperature = run_temperature(run_dir)
    if temperature is None:
        return probs, None
    from .evaluation.calibration import apply_temperature

    return apply_temperature(probs, temperature), temperature


def read_run(run_dir: str | Path) -> tuple[dict, dict]:
    """The resolved recipe and metrics.json of a run directory."""
    import json

    from .recipe import read_yaml, validate_recipe

    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise RecipeError(f"{run_dir}: not a pidx run directory (no {RECIPE_FILE})")
    cfg = validate_recipe(read_yaml(run_dir / RECIPE_FILE))
    metrics = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    return cfg, metrics


def best_checkpoint(run_dir: Path, metrics: dict) -> Path:
    rel = metrics.get("training", {}).get("best_checkpoint")
    candidates = [run_dir / rel] if rel else []
    candidates.append(run_dir / "checkpoints" / "last")
    for c in candidates:
        if c.is_dir():
            return c
    raise CheckpointError(f"{run_dir}: no checkpoint found (looked for {', '.join(map(str, candidates))})")


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None):
    """(cfg, model, state, preprocessor, checkpoint path) of a finished run."""
    run_dir = Path(run_dir)
    cfg, metrics = read_run(run_dir)
    ckpt = Path(checkpoint) if checkpoint else best_checkpoint(run_dir, metrics)
    meta = read_meta(ckpt)
    if not meta.get("preprocessing"):
        raise CheckpointError(f"{ckpt}: has no preprocessing statistics; it cannot be applied to new data")
    pre = Preprocessor.from_dict(meta["preprocessing"])
    from .run import make_model

    model, state = make_model(cfg, pre.layout)
    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = load_tree(ckpt, "model", params)
    state = load_tree(ckpt, "model_state", state)
    return cfg, eqx.combine(params, static), state, pre, ckpt


def test_run(run_dir: str | Path, data: str | Path | None = None) -> dict:
    """Metrics of a run's best checkpoint on its test split, or on another labelled file."""
    from .evaluation.metrics import classification_metrics
    from .run import _finite, make_datamodule, make_trainer

    cfg, model, state, pre, ckpt = load_run_model(run_dir)
    dm = make_datamodule(cfg)
    trainer = make_trainer(cfg, Path(run_dir), quiet=True)
    if data is None:
        dm.setup()
        arrays = dm.test
    else:
        table = dm.select_momentum(load_tracks(data, track_layout=pre.track_layout, tree=dm.tree, layout=pre.layout,
                                               selection=dm.selection, sentinels=dm.sentinels,
                                               drop_unknown_pdg=dm.drop_unknown_pdg, on_invalid=dm.on_invalid))
        arrays = arrays_from_table(table, pre)
    probs, temperature = calibrated(run_dir, trainer.predict(arrays, model, state=state))
    out = classification_metrics(np.asarray(arrays.label), probs)
    out.update({"checkpoint": str(ckpt), "data": str(data) if data else "test split", "temperature": temperature})
    return _finite(out)


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
    from .data.datamodule import resolve_momentum_range
    from .data.files import read_tracks_raw
    from .data.io import tracks_from_frame
    from .run import make_trainer

    if mc_dropout < 0:
        raise RecipeError(f"--mc-dropout must be >= 0 samples, got {mc_dropout}")
    cfg, model, state, pre, ckpt = load_run_model(run_dir)
    if mc_dropout and cfg["trainer"]["ensemble"] > 1:
        raise RecipeError("--mc-dropout samples a single model; this run is an ensemble, whose members "
                          "already give mutual_information and disagreement with --uncertainty")
    d = cfg["data"]
    raw, dtypes, what = read_tracks_raw(input_path, tree=d["tree"])
    table = tracks_from_frame(raw, source=what, track_layout=pre.track_layout, dtypes=dtypes, layout=pre.layout,
                              disabled_groups=tuple(disabled_groups), require_label=False,
                              sentinels=tuple(d["sentinels"]), on_invalid="error")
    trainer = make_trainer(cfg, Path(run_dir), quiet=True)
    arrays = arrays_from_table(table, pre)
    probs, temperature = calibrated(run_dir, trainer.predict(arrays, model, state=state))
    out = raw.copy()
    for i, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, i].astype(np.float32)
    out["pred"] = np.asarray(CLASS_NAMES)[probs.argmax(1)]
    lo, hi = resolve_momentum_range(tuple(d["momentum_range"]) if isinstance(d["momentum_range"], list)
                                    else d["momentum_range"])
    value = table.momentum if d["momentum_variable"] == "p" else table.frame["pt"].to_numpy(np.float64)
    out["in_momentum_range"] = (value > lo) & (value < hi)
    out = _add_uncertainty(out, probs, trainer, arrays, model, state, uncertainty, mc_dropout, seed)
    write_table(out, output_path)
    return {"rows": len(out), "checkpoint": str(ckpt), "output": str(output_path), "temperature": temperature,
            "columns": [c for c in out.columns if c not in raw.columns]}


def _add_uncertainty(out, probs, trainer, arrays, model, state, uncertainty, mc_dropout, seed):
    from .evaluation import uncertainty as unc

    if not (uncertainty or mc_dropout):
        return out
    out["entropy"] = unc.entropy(probs).astype(np.float32)
    if mc_dropout:
        samples = unc.mc_dropout_probs(model, state, arrays.features, arrays.group_mask, samples=mc_dropout, seed=seed)
    elif trainer.is_ensemble:
        samples = trainer.predict_members(arrays)
    else:
        return out
    u = unc.sample_uncertainty(samples)
    if mc_dropout:
        out["mc_entropy"] = u["entropy"].astype(np.float32)
    out["mutual_information"] = u["mutual_information"].astype(np.float32)
    out["disagreement"] = u["disagreement"].astype(np.float32)
    return out

__all__ = ["RECIPE_FILE", "METRICS_FILE", "CALIBRATION_FILE", "run_temperature", "calibrated", "read_run", "best_checkpoint",
           "load_run_model", "test_run", "predict_file"]

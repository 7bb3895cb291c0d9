"""From a resolved recipe to a run directory, and back.

```
runs/<recipe>/<timestamp>/
  recipe.yaml      the resolved recipe (every default filled in)
  history.csv      one row per epoch
  checkpoints/     best (top-k by the monitored metric) and last/
  metrics.json     test metrics, majority baseline, training summary, data summary, calibration
  calibration.json the fitted temperature (only with evaluation.temperature_scaling)
```
`pidx test` and `pidx predict` rebuild the model from `recipe.yaml` and load the best
checkpoint, whose preprocessing statistics are applied to new data.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import jax
import numpy as np

from .data.datamodule import TrackDataModule
from .data.schema import CLASS_NAMES, DetectorGroup, FeatureLayout
from .data.selection import TrackSelection
from .data.simulate import SimulatorConfig
from .errors import RecipeError
from .models.base import build_model
from .models.ensemble import make_ensemble, member_key
from .recipe import callback_class, dump_recipe
from .training.losses import make_loss
from .training.step import make_optimizer
from .training.trainer import Trainer
from .utils import atomic_write_json, atomic_write_text
from .inference import (  # noqa: F401  (re-exported: the public home of these is pidx.run)
    CALIBRATION_FILE, METRICS_FILE, RECIPE_FILE, best_checkpoint, load_run_model, predict_file, read_run,
    run_temperature, test_run,
)


# ----------------------------------------------------------------------------- builders
def extra_groups_from(cfg: dict) -> tuple[DetectorGroup, ...]:
    groups = []
    for i, g in enumerate(cfg["data"]["extra_groups"] or []):
        if not isinstance(g, dict) or not {"name", "columns"} <= set(g) or not set(g) <= {"name", "columns", "flag"}:
            raise RecipeError(f"'data.extra_groups[{i}]' must be {{name, columns, flag}}, got {g!r}")
        groups.append(DetectorGroup(g["name"], tuple(g["columns"]), g.get("flag")))
    return tuple(groups)



def make_datamodule(cfg: dict) -> TrackDataModule:
    d = cfg["data"]
    sim = None
    if d["source"] == "simulate":
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                  if k in SimulatorConfig.__dataclass_fields__ and k not in ("n_tracks", "seed", "layout")}
        sim = SimulatorConfig(**fields, n_tracks=d["n_tracks"], seed=d["simulation_seed"],
                              layout="o2" if d["layout"] == "auto" else d["layout"])
    rng = d["momentum_range"]
    selection = TrackSelection(**d["selection"], primaries_only=d["primaries_only"])
    return TrackDataModule(
        source=d["source"], simulator=sim, momentum_range=tuple(rng) if isinstance(rng, list) else rng,
        momentum_variable=d["momentum_variable"], seed=cfg["seed"], test_fraction=d["test_fraction"],
        val_fraction=d["val_fraction"], track_layout=d["layout"], tree=d["tree"], selection=selection,
        extra_groups=extra_groups_from(cfg), sentinels=tuple(d["sentinels"]), drop_unknown_pdg=d["drop_unknown_pdg"],
        on_invalid=d["on_invalid"], clip=d["clip"], use_cache=d["cache"])


def make_model(cfg: dict, layout: FeatureLayout):
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    members = cfg["trainer"]["ensemble"]
    try:
        if members > 1:  # member i: seed + i, exactly a single run with that seed
            return make_ensemble(cfg["model"]["name"], layout, seeds=[cfg["seed"] + i for i in range(members)],
                                 compile=True, **kwargs)
        # compiled init: the CLI's persistent compilation cache makes re-runs (test, predict, report) skip it
        return build_model(cfg["model"]["name"], layout, key=member_key(cfg["seed"]), compile=True, **kwargs)
    except ValueError as exc:
        raise RecipeError(f"model: {exc}") from None


def make_callbacks(cfg: dict, *, quiet: bool = False):
    from .training.callbacks import CSVLogger, ProgressBar

    callbacks = []
    for entry in cfg["callbacks"]:
        (name, args), = entry.items()
        try:
            callbacks.append(callback_class(name)(**args))
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"callback '{name}': {exc}") from None
    if not any(isinstance(c, CSVLogger) for c in callbacks):
        callbacks.append(CSVLogger())
    if not quiet and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar())
    return callbacks


def make_trainer(cfg: dict, root_dir: Path, *, quiet: bool = False, steps_per_epoch: int | None = None) -> Trainer:
    o, t, lcfg = cfg["optimizer"], cfg["trainer"], dict(cfg["loss"])
    class_weights = lcfg.pop("class_weights")
    loss_name = lcfg.pop("name")
    if isinstance(lcfg.get("alpha"), list):
        lcfg["alpha"] = tuple(lcfg["alpha"])
    if loss_name == "cross_entropy":
        lcfg = {}
    lr = o["learning_rate"]
    if o["schedule"] != "constant" and steps_per_epoch:
        import optax

        total = t["max_epochs"] * steps_per_epoch
        warmup = o["warmup_epochs"] * steps_per_epoch
        lr = optax.warmup_cosine_decay_schedule(0.0 if warmup else lr, lr, max(warmup, 1), total) \
            if o["schedule"] == "warmup_cosine" else optax.cosine_decay_schedule(lr, total)
    optimizer = make_optimizer(o["name"], lr, weight_decay=o["weight_decay"], grad_clip_norm=o["grad_clip_norm"])
    return Trainer(max_epochs=t["max_epochs"], batch_size=t["batch_size"], callbacks=make_callbacks(cfg, quiet=quiet),
                   optimizer=optimizer, loss=make_loss(loss_name, **lcfg), class_weights=class_weights,
                   seed=cfg["seed"], log_every_n_steps=t["log_every_n_steps"], eval_batch_size=t["eval_batch_size"],
                   precision=t["precision"], enable_progress_bar=False, default_root_dir=root_dir, config=cfg)


# ----------------------------------------------------------------------------- run directories
def new_run_dir(cfg: dict, output: str | Path | None, *, overwrite: bool = False) -> Path:
    if output is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / cfg["name"] / stamp
        n = 1
        while run_dir.exists():
            run_dir = Path("runs") / cfg["name"] / f"{stamp}-{n}"
            n += 1
    else:
        run_dir = Path(output)
        if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
            raise RecipeError(f"{run_dir}: output directory exists and is not empty; pass --overwrite to replace "
                              "it, --resume to continue it, or choose another --output")
        if run_dir.exists() and overwrite:
            import shutil

            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def data_log_line(cfg: dict, dm: TrackDataModule) -> str:
    """One line for the run's log: the file layout and how it was chosen, the cuts and repairs."""
    summary = dm.summary()
    how = "forced by data.layout" if cfg["data"]["layout"] != "auto" else (
        "the simulator's default" if cfg["data"]["source"] == "simulate" else "detected from the columns")
    n = sum(summary[k]["n_tracks"] for k in ("train", "val", "test"))
    parts = [f"data: {summary['layout']} layout ({how}), {n:,} tracks in {dm.bounds[0]:g} < "
             f"{dm.momentum_variable} < {dm.bounds[1]:g}"]
    if summary.get("selection"):
        parts.append("selection removed " + ", ".join(f"{k} {v:,}" for k, v in summary["selection"].items()))
    if summary.get("made_absent"):
        parts.append("flag set but values NaN/-999, group treated as absent: " +
                     ", ".join(f"{k} {v:,}" for k, v in summary["made_absent"].items()))
    return "; ".join(parts)


def majority_baseline(train_labels, test_labels) -> float:
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(CLASS_NAMES)).argmax())
    return float(np.mean(np.asarray(test_labels) == majority))


def fit_recipe(cfg: dict, run_dir: Path, *, resume: str | Path | None = None, quiet: bool = False) -> dict:
    """Train, test and write the run directory; returns metrics.json's content."""
    atomic_write_text(run_dir / RECIPE_FILE, dump_recipe(cfg))
    dm = make_datamodule(cfg).setup()
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(data_log_line(cfg, dm), highlight=False, markup=False, soft_wrap=True)
    model, state = make_model(cfg, dm.layout)
    steps = max(1, dm.train.num_tracks // min(cfg["trainer"]["batch_size"], dm.train.num_tracks))
    trainer = make_trainer(cfg, run_dir, quiet=quiet, steps_per_epoch=steps)
    ckpt = None
    if resume is not None:
        ckpt = run_dir / "checkpoints" / "last" if str(resume) == "last" else Path(resume)
    trainer.fit(model, dm, state=state, ckpt_path=ckpt)
    test = trainer.test()
    from .training.callbacks import EarlyStopping, ModelCheckpoint

    mc = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    es = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if es is not None and es.best_weights is None and mc is not None and mc.best_model_path:
        trainer.load_checkpoint(mc.best_model_path)  # resumed after the end: use the saved best
        test = trainer.test()
    s = trainer.summary
    metrics = {
        "recipe": cfg["name"],
        "test": {k: test[k] for k in ("accuracy", "balanced_accuracy", "macro_auc", "micro_auc", "n_tracks",
                                      "per_class", "confusion_normalized", "loss")},
        "majority_baseline": majority_baseline(dm.train.label, dm.test.label),
        "training": {
            "epochs_run": trainer.current_epoch, "stop_reason": trainer.stop_reason,
            "best_epoch": es.best_epoch if es else None,
            "best_checkpoint": str(Path(mc.best_model_path).relative_to(run_dir)) if mc and mc.best_model_path
            and Path(mc.best_model_path).is_relative_to(run_dir) else (mc.best_model_path if mc else None),
            "wall_s": s.get("wall_s"), "compile_s": s.get("compile_s"), "train_s": s.get("train_s"),
            "tracks_per_s": s.get("tracks_per_s"), "batch_size": s.get("batch_size"),
            "steps_per_epoch": s.get("steps_per_epoch"), "device": jax.devices()[0].platform,
        },
        "data": dm.summary(),
    }
    if mc is None or not mc.best_model_path:  # no checkpoint callback: keep the final weights
        trainer.save_checkpoint(run_dir / "checkpoints" / "final")
        metrics["training"]["best_checkpoint"] = "checkpoints/final"
    atomic_write_json(run_dir / METRICS_FILE, _finite(metrics))
    metrics = evaluate_run(run_dir, cfg=cfg, dm=dm, trainer=trainer, test_probs=trainer.last_probs)
    if cfg["evaluation"]["report"]:
        from .evaluation.report import generate_report

        generate_report(run_dir, max_tracks=cfg["evaluation"]["report_max_tracks"])
    return metrics


def evaluate_run(run_dir: Path, *, cfg=None, dm=None, trainer=None, test_probs=None) -> dict:
    """Baselines on the run's test tracks, oracle gaps and `test_predictions.parquet`.

    Reuses a fitted `trainer`/`dm` and the model's test probabilities when given, else loads the
    best checkpoint and predicts.
    """
    from .evaluation.baselines import add_oracle_gaps, run_baselines
    from .evaluation.report import write_test_predictions

    run_dir = Path(run_dir)
    saved_cfg, metrics = read_run(run_dir)
    cfg = cfg or saved_cfg
    if dm is None:
        dm = make_datamodule(cfg).setup()
    if trainer is None:
        _, model, state, _, _ = load_run_model(run_dir)
        trainer = make_trainer(cfg, run_dir, quiet=True)
        trainer.model, trainer.model_state = model, state
    probs = trainer.predict(dm.test) if test_probs is None else test_probs
    from .evaluation.metrics import classification_metrics

    metrics["test"] = {**metrics.get("test", {}), **classification_metrics(np.asarray(dm.test.label), probs)}
    ev = cfg["evaluation"]
    metrics["calibration"] = calibrate_run(run_dir, cfg, trainer, dm, probs)
    baselines, outputs = run_baselines(dm.tables, ev["baselines"], class_weights=cfg["loss"]["class_weights"],
                                       seed=cfg["seed"], gbdt_max_iter=ev["gbdt_max_iter"])
    add_oracle_gaps(metrics["test"], baselines)
    metrics["baselines"] = baselines
    write_test_predictions(run_dir, dm.tables["test"], np.asarray(dm.test.p), probs, outputs)
    atomic_write_json(run_dir / METRICS_FILE, _finite(metrics))
    return metrics


def calibrate_run(run_dir: Path, cfg: dict, trainer, dm, test_probs) -> dict:
    """ECE and reliability on the test split; with `evaluation.temperature_scaling`, fit T on the
    validation split (never the test split), write calibration.json and measure the test split again."""
    from .evaluation.calibration import apply_temperature, calibration_summary, fit_temperature, \
        negative_log_likelihood

    bins = cfg["evaluation"]["calibration_bins"]
    labels = np.asarray(dm.test.label)
    out = {"test": calibration_summary(test_probs, labels, bins)}
    if cfg["evaluation"]["temperature_scaling"]:
        val_probs, val_labels = trainer.predict(dm.val), np.asarray(dm.val.label)
        t = fit_temperature(val_probs, val_labels)
        fitted = {"temperature": t, "fitted_on": "validation split", "val_tracks": len(val_labels),
                  "val_nll_before": negative_log_likelihood(val_probs, val_labels),
                  "val_nll_after": negative_log_likelihood(apply_temperature(val_probs, t), val_labels)}
        atomic_write_json(Path(run_dir) / CALIBRATION_FILE, fitted)
        out.update(fitted)
        out["test_calibrated"] = calibration_summary(apply_temperature(test_probs, t), labels, bins)
    return out


def _finite(obj):
    """JSON has no NaN: write None instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


__all__ = ["extra_groups_from", "make_datamodule", "make_model", "make_callbacks", "make_trainer", "new_run_dir",
           "fit_recipe", "evaluate_run", "calibrate_run", "run_temperature", "read_run", "load_run_model", "test_run",
           "predict_file", "majority_baseline"]

"""From a typed `Recipe` to the objects of a run: data module, model, callbacks, Trainer, Predictor.

This is where recipe values become library arguments: the library below never sees a
`Recipe`, and a library error is re-raised here with the recipe key it came from.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx

from ..data.datamodule import TrackDataModule
from ..data.layouts import O2_EXTRA_INPUTS
from ..data.preprocess import Preprocessor
from ..data.schema import DetectorGroup, FeatureLayout
from ..data.selection import TrackSelection
from ..errors import CheckpointError, DataError, RecipeError, TrainingError
from ..evaluation.tables import data_notes
from ..models.base import build_model
from ..models.ensemble import make_ensemble, member_key
from ..recipe import Recipe, callback_class, objective_class
from ..training.loggers import CSVLogger, ProgressBar
from ..training.checkpoint import load_tree, read_meta
from ..training.domain import DANN
from ..training.losses import LOSSES, make_loss
from ..training.predictor import Predictor
from ..training.trainer import Trainer
from .rundir import RunDir


def make_datamodule(recipe: Recipe) -> TrackDataModule:
    d = recipe.data
    try:
        return _datamodule(recipe, d)
    except DataError as exc:  # the module's own argument checks, in recipe terms
        raise RecipeError(f"data: {exc}") from None


def _datamodule(recipe: Recipe, d) -> TrackDataModule:
    return TrackDataModule(
        source=d.source, simulator=d.simulator if d.source == "simulate" else None,
        momentum_range=d.momentum_range, momentum_variable=d.momentum_variable, seed=recipe.seed,
        test_fraction=d.test_fraction, val_fraction=d.val_fraction, track_layout=d.layout, tree=d.tree,
        selection=TrackSelection(**vars(d.selection), primaries_only=d.primaries_only),
        extra_groups=tuple(O2_EXTRA_INPUTS[name] for name in d.extra_inputs)
        + tuple(DetectorGroup(g.name, g.columns, g.flag) for g in d.extra_groups),
        sentinels=d.sentinels, drop_unknown_pdg=d.drop_unknown_pdg, on_invalid=d.on_invalid,
        other_species=d.other_species, implausible=d.implausible, clip=d.clip,
        knee=d.knee, use_cache=d.cache, memory_budget=d.memory_budget, sample_tracks=d.sample_tracks,
        chunk_tracks=d.chunk_tracks, target_source=d.target)


def model_kwargs(recipe: Recipe) -> dict:
    """The model's keyword arguments, YAML lists as tuples (activation and group-embedding names and
    import paths the models resolve themselves)."""
    return yaml_kwargs(recipe.model.params)


def make_model(recipe: Recipe, layout: FeatureLayout):
    """(model, state) of the recipe: a single model, or an ensemble whose member i has seed + i."""
    members = recipe.trainer.ensemble
    try:
        if members > 1:  # member i: seed + i, exactly a single run with that seed
            return make_ensemble(recipe.model.name, layout, seeds=[recipe.seed + i for i in range(members)],
                                 compile=True, **model_kwargs(recipe))
        # compiled init: the CLI's persistent compilation cache makes re-runs (test, predict, report) skip it
        return build_model(recipe.model.name, layout, key=member_key(recipe.seed), compile=True,
                           **model_kwargs(recipe))
    except ValueError as exc:
        raise RecipeError(f"model: {exc}") from None


def make_callbacks(recipe: Recipe, *, quiet: bool = False) -> list:
    callbacks = []
    for spec in recipe.callbacks:
        try:
            callbacks.append(callback_class(spec.name)(**spec.args))
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"callback '{spec.name}': {exc}") from None
    if not any(isinstance(c, CSVLogger) for c in callbacks):
        callbacks.append(CSVLogger())
    if not quiet and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar())
    return callbacks


def make_trainer(recipe: Recipe, root_dir: Path, *, quiet: bool = False) -> Trainer:
    o, t = recipe.optimizer, recipe.trainer
    try:
        # the optimizer by name: the Trainer builds it, with what its callbacks need (WeightAveraging's average)
        return Trainer(max_epochs=t.max_epochs, batch_size=t.batch_size, callbacks=make_callbacks(recipe, quiet=quiet),
                       optimizer=o.name, learning_rate=o.learning_rate, lr_schedule=o.schedule,
                       warmup_epochs=o.warmup_epochs,
                       weight_decay=o.weight_decay, grad_clip_norm=o.grad_clip_norm,
                       loss=make_objective(recipe), class_weights=recipe.loss.class_weights, seed=recipe.seed,
                       log_every_n_steps=t.log_every_n_steps, eval_batch_size=t.eval_batch_size,
                       precision=t.precision, enable_progress_bar=False, devices=t.devices, max_time=t.max_time,
                       val_check_interval=t.val_check_interval,
                       default_root_dir=root_dir, config=recipe.to_dict())
    except TrainingError as exc:
        raise RecipeError(f"trainer: {exc}") from None


ADVERSARIAL = {"dann": False, "cdan": True}  # loss.adaptation → DANN conditional on the prediction or not


def make_objective(recipe: Recipe):
    """The training objective of the recipe's `loss` section: the classification loss, with DANN when
    `loss.adaptation` is `dann` (conditional on the prediction, CDAN, with `cdan`), or the objective class `loss.name` names, built with `loss.params`."""
    loss = recipe.loss
    if loss.name not in LOSSES:
        try:
            return objective_class(loss.name)(**yaml_kwargs(loss.params))
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"loss: {loss.name}: {exc}") from None
    fn = make_loss("focal", gamma=loss.gamma, alpha=loss.alpha) if loss.name == "focal" else make_loss(loss.name)
    if loss.adaptation in ADVERSARIAL:
        return DANN(fn, weight=loss.adaptation_weight, conditional=ADVERSARIAL[loss.adaptation])
    return fn


def yaml_kwargs(params: dict) -> dict:
    """Keyword arguments from a recipe mapping (model or objective parameters), YAML lists as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def load_predictor(run: RunDir, checkpoint: str | Path | None = None, *, priors=None,
                   recipe_priors: bool = False, eval_batch_size: int | None = None) -> tuple[Recipe, Predictor, Path]:
    """(recipe, Predictor, checkpoint path) of a finished run: its model's weights, the checkpoint's
    preprocessing statistics and the run's posterior map, re-weighted to `priors` (species
    abundances, a mapping or four numbers) when given, else with `recipe_priors` to the recipe's
    `evaluation.priors` (predict and export; test measures the training sample's). `eval_batch_size`
    overrides the recipe's `trainer.eval_batch_size`."""
    recipe, metrics = run.recipe(), run.metrics()
    if priors is None and recipe_priors:
        priors = recipe.evaluation.priors
    ckpt = Path(checkpoint) if checkpoint else run.best_checkpoint(metrics)
    meta = read_meta(ckpt)
    if not meta.get("preprocessing"):
        raise CheckpointError(f"{ckpt}: has no preprocessing statistics; it cannot be applied to new data")
    pre = Preprocessor.from_dict(meta["preprocessing"])
    model, state = make_model(recipe, pre.layout)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    model = eqx.combine(load_tree(ckpt, "model", params), static)
    state = load_tree(ckpt, "model_state", state)
    posterior = run.posterior_map()
    if priors is not None:
        if posterior is None or posterior.train_priors is None:
            raise RecipeError(f"{run}: has no posterior map with training abundances (evaluation.posterior: none, "
                              "or a species absent from the train split); --priors cannot re-weight it")
        try:
            posterior = posterior.with_priors(priors)
        except ValueError as exc:
            raise RecipeError(f"priors: {exc}") from None
    predictor = Predictor(model, state, pre, posterior=posterior,
                          eval_batch_size=eval_batch_size or recipe.trainer.eval_batch_size)
    return recipe, predictor, ckpt


def data_log_line(recipe: Recipe, dm: TrackDataModule) -> str:
    """One line for the run's log: the file layout and how it was chosen, the cuts and repairs."""
    summary = dm.summary()
    how = "forced by data.layout" if recipe.data.layout != "auto" else (
        "the simulator's default" if recipe.data.source == "simulate" else "detected from the columns")
    n = sum(summary[k]["n_tracks"] for k in ("train", "val", "test"))
    parts = [f"data: {summary['layout']} layout ({how}), {n:,} tracks in {dm.bounds[0]:g} < "
             f"{dm.momentum_variable} < {dm.bounds[1]:g}"]
    if "streamed" in summary:
        st = summary["streamed"]
        parts.append(f"over the memory budget ({st['memory_budget_bytes'] / 1e9:.3g} GB): streamed in chunks of "
                     f"{st['chunk_tracks']:,} tracks from {st['cache']}, split by track hash")
    if len(summary.get("trees", {})) > 1:
        trees = list(summary["trees"].items())
        shown = ", ".join(f"{name.rsplit(':', 1)[-1]} {n:,}" for name, n in trees[:6])
        parts.append(f"read {len(trees)} trees ({shown}{f' and {len(trees) - 6} more' if len(trees) > 6 else ''})")
    if summary.get("selection"):
        parts.append("selection removed " + ", ".join(f"{k} {v:,}" for k, v in summary["selection"].items()))
    parts += data_notes(summary)
    return "; ".join(parts)


__all__ = ["make_datamodule", "model_kwargs", "make_model", "make_callbacks", "make_trainer",
           "load_predictor", "data_log_line"]

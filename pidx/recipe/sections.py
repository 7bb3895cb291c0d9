"""The recipe as typed, frozen sections: what a recipe may say, with defaults and help.

A YAML recipe is turned into a `Recipe` in one place (`pidx.recipe.parse`): every key
is checked against these dataclasses (`Literal` fields list their choices), and the
result is immutable. `Recipe.to_dict()` gives back the YAML form (lists, not tuples),
the one written as `recipe.yaml` and stored in checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..data.preprocess import DEFAULT_CLIP, DEFAULT_KNEE
from ..simulation import SimulatorConfig

ExtraInput = Literal["its_cluster_sizes", "centrality"]  # the keys of pidx.data.layouts.O2_EXTRA_INPUTS
BaselineName = Literal["bayes_pid", "nsigma", "gbdt", "xgboost", "lightgbm", "oracle", "vector_oracle"]


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class SelectionSection:
    """DPG track selections, applied before the momentum range and the split."""

    vz_max: float | None = _help("DPG cut |vz| < value (cm); applied before the momentum range", default=None)
    eta_max: float | None = _help("DPG cut |eta| < value", default=None)
    dca_xy_max: float | None = _help("DPG cut |DCAxy| < value (cm)", default=None)
    dca_z_max: float | None = _help("DPG cut |DCAz| < value (cm)", default=None)
    min_tpc_clusters: int | None = _help("DPG cut tpcNClsFound >= value", default=None)
    min_its_clusters: int | None = _help("DPG cut: ITS layers with a cluster >= value", default=None)


@dataclass(frozen=True)
class ExtraGroup:
    """A detector group beyond the layout's own (`{name, columns, flag}`)."""

    name: str
    columns: tuple[str, ...]
    flag: str | None = None


# `data.n_tracks` and `data.simulation_seed` are the simulator's `n_tracks` and `seed`;
# every other SimulatorConfig field but `layout` is a `data.<field>` key of its own.
SIMULATOR_KEYS = {"n_tracks": "n_tracks", "simulation_seed": "seed",
                  **{f.name: f.name for f in dataclasses.fields(SimulatorConfig)
                     if f.name not in ("n_tracks", "seed", "layout")}}


@dataclass(frozen=True)
class DataSection:
    source: str = _help("'simulate', or a ROOT/CSV/Parquet file, a directory or a glob of them", default="simulate")
    layout: Literal["auto", "o2", "legacy"] = _help(
        "file layout: o2 (the pid_features tree of O2Physics' extractor), legacy (the seed's 21 columns) or auto "
        "(detected from the columns; the simulator writes o2)", default="auto")
    tree: str = _help("TTree read from ROOT files", default="pid_features")
    primaries_only: bool = _help("keep MC physical primaries only (mcIsPhysicalPrimary)", default=False)
    selection: SelectionSection = field(default_factory=SelectionSection)
    momentum_range: str | tuple[float, float] = _help(
        "full (p > 0.1), mid (0.7-1.5), high (1-3 GeV/c) or [low, high]", default="full")
    momentum_variable: Literal["p", "pt"] = _help("select on total momentum p = pT cosh(eta) or on pT", default="p")
    test_fraction: float = _help("share of the selected tracks held out for testing", default=0.2)
    val_fraction: float = _help("share carved from the training part for validation", default=0.1)
    sentinels: tuple[float, ...] = _help("values meaning 'missing' besides NaN", default=(-999.0,))
    other_species: Literal["contamination", "exclude", "error"] = _help(
        "tracks of species other than pi, K, p, e (muons, nuclei, fake tracks with PDG 0): never trained on, counted "
        "per species; contamination: kept in the validation and test splits, where every purity and working point "
        "counts them; exclude: dropped; error: refuse the file", default="contamination")
    drop_unknown_pdg: bool = _help("former name of other_species: exclude (true)", default=False)
    on_invalid: Literal["error", "drop"] = _help("rows whose flag says present but whose values are "
                                                 "NaN/sentinel (or whose momentum is missing)", default="error")
    implausible: Literal["absent", "error"] = _help(
        "values no detector produces under a present flag (inf, or outside the plausible range of docs/data.md, e.g. "
        "a negative momentum): absent = the group treated as absent for that track (counted per column; a track "
        "with such a momentum is dropped and counted), error = refuse the file", default="absent")
    clip: float = _help("robust-scaled features are clipped to [-clip, clip]", default=DEFAULT_CLIP)
    knee: float | None = _help("robust-scaled features grow logarithmically beyond ±knee, so tails keep their "
                               "order (null: linear up to the clip)", default=DEFAULT_KNEE)
    cache: bool = _help("cache simulated tables on disk", default=True)
    memory_budget: str | int = _help(
        "host memory the data may take ('4GB', bytes, or auto = half the machine's); files over it are streamed: "
        "split by a hash of each track, preprocessed into a cache on disk ($PIDX_CACHE_DIR), trained chunk by chunk",
        default="auto")
    sample_tracks: int = _help("streamed data: tracks per split in the seeded sample that fits the preprocessing "
                               "(train) and that the tree baselines and the report use", default=200_000)
    target: str | None = _help("unlabelled data (a ROOT/CSV/Parquet file, directory or glob; labels ignored) read "
                               "like the training data: what loss.adaptation adapts to", default=None)
    chunk_tracks: int | None = _help("streamed data: tracks per chunk (default: a sixteenth of the memory budget)",
                                     default=None)
    extra_inputs: tuple[ExtraInput, ...] = _help(
        "o2 layout: inputs beyond the 46-value vector, each a detector group of its own: its_cluster_sizes (the 7 "
        "per-layer ITS cluster sizes and their mean × cos λ) and centrality (centFT0C). Such a model exports to plain "
        "ONNX, not to pid-onnx-inference", default=())
    extra_groups: tuple[ExtraGroup, ...] = _help("list of {name, columns, flag} detector groups", default=())
    simulator: SimulatorConfig = _help(
        "the simulator's parameters, written flat in `data` (n_tracks, simulation_seed and every field of "
        "SimulatorConfig)", default=SimulatorConfig(n_tracks=4_160_000, seed=231))

    @property
    def momentum_range_yaml(self) -> str | list[float]:
        """The momentum range as the recipe writes it: a name or `[low, high]`."""
        return yaml_form(self.momentum_range)


@dataclass(frozen=True)
class ModelSection:
    name: str = _help("simplenn, dnn, fse_phase0, fse_phase1 or package.module:Class", default="fse_phase1")
    params: dict[str, Any] = _help("keyword arguments of the model class", default_factory=dict)


@dataclass(frozen=True)
class LossSection:
    name: str = _help("focal, cross_entropy, or package.module:Class (a pidx.training.objectives.Objective, built "
                      "with loss.params)", default="focal")
    params: dict[str, Any] = _help("keyword arguments of an objective named by import path", default_factory=dict)
    adaptation: Literal["none", "dann", "cdan", "reweight"] = _help(
        "MC → data (needs data.target): dann (a domain classifier behind a gradient reversal on the model's "
        "representation), cdan (the same on the representation times the predicted probabilities) or reweight (each train track weighted by p/(1-p), p a classifier's probability that it "
        "is data)", default="none")
    adaptation_weight: float = _help("dann, cdan: the reversal weight reached at the end of training", default=1.0)
    reweight_clip: float = _help("reweight: the largest weight, after normalising the weights to mean 1",
                                 default=20.0)
    gamma: float = _help("focal loss focusing parameter", default=2.0)
    alpha: float | tuple[float, ...] = _help("focal loss alpha: a number or one per class", default=0.25)
    class_weights: str | tuple[float, ...] = _help("'balanced', 'none' or [w_pi, w_ka, w_pr, w_el], from the "
                                                   "train split", default="balanced")


@dataclass(frozen=True)
class OptimizerSection:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = _help("peak learning rate", default=1e-3)
    weight_decay: float = _help("adamw only", default=0.0)
    grad_clip_norm: float | None = _help("clip gradients to this global norm", default=None)
    schedule: Literal["constant", "cosine", "warmup_cosine"] = _help("learning-rate schedule over max_epochs",
                                                                      default="constant")
    warmup_epochs: int = _help("linear warm-up length for warmup_cosine", default=0)


@dataclass(frozen=True)
class TrainerSection:
    max_epochs: int = 150
    batch_size: int = 1024
    log_every_n_steps: int = _help("chunk of steps per on-device scan when a callback wants on_train_batch_end",
                                   default=50)
    eval_batch_size: int = _help("batch of validation, test and predict", default=65536)
    precision: Literal["f32", "bf16"] = _help("bf16: bf16 compute, f32 weights and loss", default="f32")
    ensemble: int = _help("members trained in one vmapped program (seeds seed, seed+1, ...); 1 = a single model",
                          default=1)
    max_time: float | str | None = _help(
        "stop training after this wall time (seconds or DD:HH:MM:SS, data set-up included); the state inside the "
        "epoch is saved as checkpoints/interrupted, which --resume auto continues", default=None)
    val_check_interval: int | None = _help(
        "also validate every this many steps inside an epoch (EarlyStopping counts these checks; rows in "
        "val_checks.csv); null: once per epoch", default=None)
    devices: int | Literal["auto"] = _help(
        "devices trained on data-parallel (batch_size is the global batch): auto = every device of the default "
        "backend (every process's under jax.distributed), 1 = one", default="auto")


@dataclass(frozen=True)
class CallbackSpec:
    """One `callbacks:` entry: a built-in name or `package.module:Class`, and its arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationSection:
    baselines: tuple[BaselineName, ...] = _help("classic methods measured on the same test tracks (xgboost and "
                                                "lightgbm need pip install 'pidx[trees]')",
                                                default=("bayes_pid", "nsigma", "gbdt", "oracle", "vector_oracle"))
    gbdt_max_iter: int = 200
    report: bool = _help("write report/ at the end of `pidx fit`", default=True)
    report_max_tracks: int = _help("tracks used for importance and ablation", default=20_000)
    calibration_bins: int = _help("equal-width confidence bins of the ECE and reliability diagrams", default=15)
    posterior: Literal["bias_temperature", "temperature", "weights_only", "none"] = _help(
        "how network outputs become posteriors: class weights undone, then a temperature and a bias per species "
        "(bias_temperature), a temperature only, nothing more (weights_only), fitted on the validation split; "
        "none: raw outputs", default="bias_temperature")
    priors: dict[str, float] | None = _help("abundances {pi, ka, pr, el} that predict and export re-weight "
                                            "posteriors to (e.g. from `pidx priors`); null: the training sample's",
                                            default=None)
    working_points: tuple[str, ...] = _help("selections like ka:purity=0.95 or pr:efficiency=0.9: threshold chosen "
                                            "on the validation split, reported on the test split", default=())


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: every default filled in, every value typed."""

    seed: int = _help("seed of the split, the initialisation and training", default=231)
    name: str | None = _help("run name (default: the recipe file name)", default=None)
    description: str = _help("one line shown by `pidx recipes`", default="")
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    callbacks: tuple[CallbackSpec, ...] = _help("list of Name or {Name: {args}}; Name is built-in or "
                                                "package.module:Class", default=())
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)

    def replace(self, **changes) -> "Recipe":
        """A copy with top-level fields replaced (sections are replaced whole)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The YAML form: flat `data` (simulator keys included), `model.name` beside its
        parameters, callbacks as `{Name: {args}}`, lists instead of tuples."""
        out = {f.name: yaml_form(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data = {k: v for k, v in out["data"].items() if k != "simulator"}
        sim = self.data.simulator
        data.update({key: yaml_form(getattr(sim, attr)) for key, attr in SIMULATOR_KEYS.items()})
        out["data"] = data
        out["model"] = {"name": self.model.name, **yaml_form(self.model.params)}
        out["callbacks"] = [{c.name: yaml_form(c.args)} for c in self.callbacks]
        return out


def yaml_form(value):
    """`value` as YAML writes it: dataclasses as mappings, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: yaml_form(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [yaml_form(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_form(v) for k, v in value.items()}
    return value


__all__ = ["yaml_form", "BaselineName", "SelectionSection", "ExtraGroup", "SIMULATOR_KEYS", "DataSection",
           "ModelSection", "LossSection", "OptimizerSection", "TrainerSection", "CallbackSpec", "EvaluationSection", "Recipe"]

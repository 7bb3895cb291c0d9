"""`Trainer`: Lightning's vocabulary, JAX's speed.

```python
trainer = pidx.Trainer(max_epochs=150, batch_size=1024, callbacks=[pidx.EarlyStopping(patience=15)])
trainer.fit(model, datamodule)          # or fit(..., ckpt_path="runs/x/checkpoints/last")
metrics = trainer.test(datamodule=datamodule)
```

Randomness is a pure function of `seed`: the epoch's permutation comes from
`fold_in(seed, epoch)` and the dropout keys of step `s` from `fold_in(seed, s)`, so
dropout keys are never reused and an interrupted run resumed from a checkpoint ends
with the same weights as an uninterrupted one.

Given an `Ensemble` (see `pidx.models.ensemble`), the Trainer trains its K members in
one program (vmapped over members); member `i` draws its randomness from
`ensemble.seeds[i]` instead of `seed`, and validation, early stopping and
checkpoints use the members' mean probabilities.
"""

from __future__ import annotations

import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TrainingError
from ..models.ensemble import Ensemble
from ..utils import parse_duration
from .callbacks import Callback, ValidationMetrics, wants_batch_hooks
from .feed import TrainFeed, resident_target
from .loggers import ProgressBar
from .losses import compute_class_weights
from .objectives import as_objective
from .parallel import any_process, data_parallel, resolve_devices
from .step import PERMUTATION_STREAM, SCHEDULES, StepInputs, make_train_chunk, step_blocks
from .trainer_eval import EvaluationMixin
from .trainer_setup import EMPTY_STATE, SetupMixin, check_step_block
from .trainer_state import CheckpointingMixin
from .weight_averaging import WeightAveraging

PRECISIONS = {"f32": None, "bf16": jnp.bfloat16}


class Trainer(SetupMixin, CheckpointingMixin, EvaluationMixin):
    """Fits, validates, tests and predicts with any `PIDModel`.

    **Arguments:**

    - `max_epochs`, `batch_size`: training length and batch size (the last partial
      batch of each epoch is dropped; fewer train tracks than one batch → one batch
      of all of them).
    - `callbacks`: list of `Callback`s. `ValidationMetrics` is added if absent, and
      `ProgressBar` when `enable_progress_bar`.
    - `optimizer`, `learning_rate`, `weight_decay`, `grad_clip_norm`: see
      `make_optimizer`; `learning_rate` may be an optax schedule. Or pass a ready
      optax transformation as `optimizer`. `lr_schedule` (`constant`, `cosine`, `warmup_cosine`,
      with `warmup_epochs`): the learning rate over `max_epochs`, built at `fit` from the epoch's
      step count (an optimizer by name and a number as `learning_rate` only). A `WeightAveraging` callback adds `track_average` to
      an optimizer built by name.
    - `loss`: a training objective (`pidx.training.objectives.Objective`, e.g. `DANN(...)`) or a loss
      (`CrossEntropy()`, `FocalLoss(...)`: the classification objective with it; default
      `FocalLoss(gamma=2, alpha=0.25)`). Validation always uses the objective's classification loss.
    - `class_weights`: `"balanced"`, `"none"` or a list of 4 weights, computed from
      the train split before the first step.
    - `seed`: root of all randomness in training.
    - `log_every_n_steps`: chunk length of the on-device scan when a callback wants
      `on_train_batch_end`; otherwise the whole epoch is one scan.
    - `eval_batch_size`: batch of the jitted validation/test/predict pass.
    - `precision`: `"f32"` or `"bf16"` (bf16 compute, f32 weights, loss and optimizer).
    - `step_block`: rows a train step computes at a time, its loss and gradient averaged over the
      blocks: `"auto"` (the model's `train_block` on a CPU, where a block stays in cache; whole batches
      on an accelerator), a number, or `None` (whole batches). The same mathematics either way.
    - `devices`: `"auto"` (every device of the default backend, every process's under
      `jax.distributed`) or how many; more than one trains data-parallel (`pidx.training.parallel`):
      the batch split over the devices, the weights replicated. `batch_size` is the global batch.
    - `max_time`: stop training after this long since `fit` was called (seconds or
      `"DD:HH:MM:SS"`; data set-up and compiling count), checked every `log_every_n_steps` steps.
      A stop inside an epoch keeps the steps done; `ModelCheckpoint` saves that state as
      `checkpoints/interrupted`, from which a resumed fit continues exactly.
    - `val_check_interval`: also validate every this many steps inside an epoch (long epochs): the
      validation hooks run, so `EarlyStopping` counts these checks as Lightning's does (its decision
      takes effect at the epoch's end); the rows go to `step_validations` (CSVLogger: `val_checks.csv`).
    - `default_root_dir`: where callbacks write by default (checkpoints/, history.csv).
    - `config`: JSON-able run configuration stored in every checkpoint.
    """

    def __init__(self, *, max_epochs: int = 150, batch_size: int = 1024, callbacks: list[Callback] | None = None,
                 optimizer="adam", learning_rate=1e-3, weight_decay: float = 0.0,
                 grad_clip_norm: float | None = None, lr_schedule: str = "constant", warmup_epochs: int = 0,
                 loss=None, class_weights="balanced", seed: int = 231,
                 log_every_n_steps: int = 50, eval_batch_size: int = 65536, precision: str = "f32",
                 step_block: int | str | None = "auto",
                 enable_progress_bar: bool = True, devices: int | str = "auto", max_time: float | str | None = None,
                 val_check_interval: int | None = None,
                 default_root_dir: str | Path = "runs/default", config: dict | None = None):
        if max_epochs < 1 or batch_size < 1:
            raise TrainingError(f"max_epochs and batch_size must be >= 1, got {max_epochs}, {batch_size}")
        if precision not in PRECISIONS:
            raise TrainingError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.max_epochs, self.batch_size, self.seed = max_epochs, batch_size, seed
        try:
            self.objective = as_objective(loss)  # None: the focal loss
        except TypeError as exc:
            raise TrainingError(str(exc)) from None
        self.loss = self.objective.loss  # validation's and the posteriors' loss
        self.class_weights_mode = class_weights
        self.log_every_n_steps, self.eval_batch_size = max(1, log_every_n_steps), eval_batch_size
        self.precision, self.default_root_dir, self.config = precision, Path(default_root_dir), config
        self.step_block = check_step_block(step_block)
        resolve_devices(devices)  # a bad value fails here, not at fit
        try:
            self.max_time = parse_duration(max_time, what="max_time")
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        self.devices, self.parallel = devices, None
        if val_check_interval is not None and (isinstance(val_check_interval, bool) or int(val_check_interval) < 1):
            raise TrainingError(f"val_check_interval must be a number of steps >= 1, got {val_check_interval!r}")
        self.val_check_interval = None if val_check_interval is None else int(val_check_interval)
        callbacks = list(callbacks or [])
        averaging = [c for c in callbacks if isinstance(c, WeightAveraging)]
        if len(averaging) > 1:
            raise TrainingError(f"at most one WeightAveraging callback, got {len(averaging)}")
        if lr_schedule not in SCHEDULES:
            raise TrainingError(f"lr_schedule must be one of {list(SCHEDULES)}, got {lr_schedule!r}")
        if lr_schedule != "constant" and (not isinstance(optimizer, str) or callable(learning_rate)):
            raise TrainingError("lr_schedule needs an optimizer by name and a number as learning_rate")
        self.lr_schedule, self.warmup_epochs = lr_schedule, warmup_epochs
        self._optimizer_args = None if not isinstance(optimizer, str) else dict(
            name=optimizer, learning_rate=learning_rate, weight_decay=weight_decay, grad_clip_norm=grad_clip_norm,
            average_decay=averaging[0].decay if averaging else None)
        self.optimizer = optimizer if self._optimizer_args is None else self._build_optimizer(None)
        if not any(isinstance(c, ValidationMetrics) for c in callbacks):
            callbacks.insert(0, ValidationMetrics())
        if enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(ProgressBar())
        bad = [c for c in callbacks if not isinstance(c, Callback)]
        if bad:
            raise TrainingError(f"callbacks must be pidx Callback instances, got {bad}")
        self.callbacks = callbacks
        self._evaluator_key, self._evaluators = None, {}  # the jitted evaluation passes, per model structure
        self._placed_arrays = None  # the last split replicated over the fit's devices
        self._reset()

    def _reset(self):
        self.current_epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.stop_reason: str | None = None
        self.logged_metrics: dict[str, float] = {}
        self.history: list[dict] = []
        self.step_validations: list[dict] = []  # val_check_interval's checks inside epochs
        self.validating_inside_epoch = False
        self.validation_outputs = None
        self.epoch_step_losses = np.zeros(0)
        self.restored_epoch: int | None = None
        self.epoch_step = 0  # steps done in the current epoch (for mid-epoch checkpoints)
        self._resume_step = 0
        self._interrupt_requested, self._interrupt_signal = False, None
        self.time_limit_reached = False
        self.summary: dict = {}
        self.state = EMPTY_STATE  # params, optimizer and model state, the objective's weights, step, key
        self.static = self.objective_static = None  # the model's and the objective's non-array structure
        self.datamodule = None
        self.feed, self._checkpoint_chunking = None, None
        self.class_weights = None  # computed from the train split at fit (all 1 until then)

    # ------------------------------------------------------------------ hooks
    # what the Trainer itself writes into `logged_metrics` each epoch
    LOGGED_METRICS = ("epoch", "step", "train/loss", "train/accuracy", "lr", "time/train_epoch_s",
                      "throughput/tracks_per_s", "val/loss", "val/accuracy", "val/nll", "time/epoch_s")

    def metric_names(self) -> set[str]:
        """Every metric an epoch logs: the Trainer's own, the objective's and those its callbacks declare."""
        own = set(self.LOGGED_METRICS) | {f"train/{name}" for name in self.objective.log_names}
        return own.union(*(c.metrics for c in self.callbacks))

    def _call_hook(self, name: str, *args):
        ordered = [c for c in self.callbacks if not c.runs_last]
        last = [c for c in self.callbacks if c.runs_last]
        for cb in ordered:
            getattr(cb, name)(self, *args)
        model_hook = getattr(self.static, name, None) if self.static is not None else None
        if callable(model_hook):
            model_hook(self, *args)
        for cb in last:
            getattr(cb, name)(self, *args)

    # ------------------------------------------------------------------ model access
    @property
    def model(self):
        """The current model (weights combined with its static structure)."""
        return None if self.params is None else eqx.combine(self.params, self.static)

    @model.setter
    def model(self, model):
        params, static = eqx.partition(model, eqx.is_inexact_array)
        same = self.params is not None and (jax.tree.structure(params) == jax.tree.structure(self.params))
        self.params, self.static = params, static
        if self.opt_state is None or not same:
            init = jax.vmap(self.optimizer.init) if self.is_ensemble else self.optimizer.init
            self.opt_state = init(params)

    @property
    def is_global_zero(self) -> bool:
        """Whether this process writes files (checkpoints, logs): process 0 of a multi-process run."""
        return jax.process_index() == 0

    @property
    def is_ensemble(self) -> bool:
        """Whether the model is an `Ensemble` trained member-vmapped."""
        return isinstance(self.static, Ensemble)

    def set_weights(self, params, model_state):
        self.params, self.model_state = params, model_state

    # ------------------------------------------------------------------ fit
    def fit(self, model, datamodule, *, state: eqx.nn.State | None = None, ckpt_path: str | Path | None = None):
        """Train `model` on `datamodule.train`, validating on `datamodule.val` each epoch.

        **Arguments:**

        - `model`: any `PIDModel`.
        - `datamodule`: a `TrackDataModule` (or anything with `setup()`, `train`, `val`,
          `class_counts` and `preprocessor`).
        - `state`: the model's `eqx.nn.State` (built from the model if omitted).
        - `ckpt_path`: resume exactly from this checkpoint directory.
        """
        self._reset()
        self._fit_t0 = time.perf_counter()  # max_time counts from here: data set-up and compiling included
        self.datamodule = datamodule
        self.parallel = data_parallel(self.devices)
        # Training donates its buffers: work on copies so the caller's model and state stay usable.
        copy = lambda tree: jax.tree.map(lambda a: jnp.copy(a) if eqx.is_array(a) else a, tree)  # noqa: E731
        self.model = copy(model)
        self.model_state = copy(state) if state is not None else eqx.nn.State(model)
        try:
            self._call_hook("setup", "fit")
            datamodule.setup()
            self.class_weights = jnp.asarray(compute_class_weights(self.class_weights_mode, datamodule.class_counts))
            self._schedule_learning_rate(datamodule.train)
            self._init_objective()
            if ckpt_path is not None:
                self.load_checkpoint(ckpt_path)
            self._place_step_and_key()
            self._call_hook("on_fit_start")
            with self._graceful_interrupt():
                self._fit_loop(datamodule)
            self._call_hook("on_train_end")
            self._call_hook("on_fit_end")
        except BaseException as exc:
            self._call_hook("on_exception", exc)
            raise
        finally:
            self._call_hook("teardown", "fit")
        return self

    def _fit_loop(self, dm):
        train, val = dm.train, dm.val
        n = train.num_tracks
        batch = min(self.batch_size, n)
        per_batch = any(wants_batch_hooks(c) for c in self.callbacks)
        timed = self.max_time is not None  # the clock is read between chunks
        compute_dtype = PRECISIONS[self.precision]
        members = self.is_ensemble
        par = self.parallel
        if par is not None and batch % par.size:
            raise TrainingError(f"batch size {batch} is not divisible by the {par.size} devices it is split over")
        block = self._train_block()
        train_chunk = make_train_chunk(self.static, self.objective, self.optimizer, compute_dtype, ensemble=members,
                                       parallel=par, objective_static=self.objective_static, block_size=block)
        fold = jax.vmap(jax.random.fold_in, in_axes=(0, None)) if members else jax.random.fold_in
        perm_root = fold(self.state.key, PERMUTATION_STREAM)
        self.feed = feed = TrainFeed(train, batch, parallel=par, members=members, fold=fold,
                                     weight=getattr(dm, "train_weight", None))
        target = resident_target(dm, self.objective, par)
        self._check_chunking()
        n_steps = feed.n_steps
        chunk = min(self.log_every_n_steps, n_steps) if per_batch or timed else n_steps
        vci = self.val_check_interval
        if par is not None:
            perm_root, self.class_weights = par.replicate((perm_root, self.class_weights))
        inputs = StepInputs(self.class_weights, target, jnp.float32(self.max_epochs * n_steps))
        compiled, compile_s = {}, 0.0
        self.train_programs = {}  # (steps, batch) → the lowered train program
        fit_start = time.perf_counter()
        train_time, tracks_seen = 0.0, 0
        self.summary = {"batch_size": batch, "steps_per_epoch": n_steps, "train_tracks": n,
                        "dropped_per_epoch": n - n_steps * batch, "devices": 1 if par is None else par.size,
                        "processes": jax.process_count(), "train_chunks": len(feed.bounds),
                        "step_blocks": step_blocks(batch, block, self.objective, has_target=target is not None,
                                                   parallel=par)}

        while self.current_epoch < self.max_epochs and not self.should_stop:
            first, self._resume_step = self._resume_step, 0  # resuming an interrupted epoch
            self.epoch_step = first
            self._call_hook("on_train_epoch_start")
            t0 = time.perf_counter()
            # The epoch trains on its own reference to the state: what a hook puts in place inside the
            # epoch (WeightAveraging's average for a validation) is a view, replaced after the next chunk.
            # Replicating is a no-op unless a callback or a checkpoint put new weights in place.
            state = self.state if par is None else par.replicate(self.state)
            losses, corrects, logs = [], [], []
            for data, idx_all, chunk_first in feed.epoch(fold(perm_root, self.current_epoch), self.current_epoch,
                                                         first):
                start, total = chunk_first, idx_all.shape[-2]
                while start < total:
                    steps = min(chunk, total - start)
                    if vci:  # land on every val_check_interval-th step of the epoch
                        steps = min(steps, vci - self.epoch_step % vci)
                    idx = idx_all[..., start:start + steps, :]
                    start += steps
                    shape = (steps, data[0].shape[0])
                    if shape not in compiled:  # AOT so compile time is measured apart from training
                        c0 = time.perf_counter()
                        lowered = train_chunk.lower(state, idx, data, inputs)
                        self.train_programs[shape] = lowered  # what runs, inspectable (e.g. its dtypes)
                        compiled[shape] = lowered.compile()
                        compile_s += time.perf_counter() - c0
                        self.summary["scan_lengths"] = sorted({s for s, _ in compiled})  # steps per on-device scan
                        t0 += time.perf_counter() - c0
                    state, (loss, correct, log) = compiled[shape](state, idx, data, inputs)
                    self.state = state
                    self.global_step += steps  # the host's count of state.step (read without a sync)
                    self.epoch_step += steps
                    if members:  # per-member [K, steps]: log the members' mean
                        loss, correct = loss.mean(0), correct.mean(0)
                        log = {k: v.mean(0) for k, v in log.items()}
                    losses.append(loss)
                    corrects.append(correct)
                    logs.append(log)
                    if vci and self.epoch_step % vci == 0 and self.epoch_step < n_steps:
                        self._validate_inside_epoch(val, losses)
                    if any_process(self._interrupt_requested) and self.epoch_step < n_steps:
                        raise self._interruption(f"interrupted at epoch {self.current_epoch}, step {self.global_step}")
                    if per_batch:
                        self._call_hook("on_train_batch_end", {
                            "loss": float(jnp.mean(loss)), "accuracy": float(jnp.sum(correct)) / (steps * batch),
                            "steps": steps}, self.epoch_step - 1)
                    if timed and self.epoch_step < n_steps and self._out_of_time():
                        break
                del data, idx_all  # the next chunk replaces this one on the device, not beside it
                if self.time_limit_reached:
                    break
            if self.time_limit_reached:  # inside the epoch: no validation of a part-epoch
                break
            self.epoch_step_losses = np.asarray(jnp.concatenate(losses))  # one host sync per epoch
            epoch_train_s = time.perf_counter() - t0
            train_time += epoch_train_s
            done_steps = n_steps - first
            tracks_seen += done_steps * batch
            self.logged_metrics = {
                "epoch": self.current_epoch, "step": self.global_step,
                "train/loss": float(np.mean(self.epoch_step_losses)),
                "train/accuracy": float(np.sum(np.asarray(jnp.concatenate(corrects)))) / (done_steps * batch),
                "lr": self.learning_rate, "time/train_epoch_s": epoch_train_s,
                "throughput/tracks_per_s": done_steps * batch / max(epoch_train_s, 1e-9),
                **{f"train/{k}": float(np.mean(np.concatenate([np.asarray(lg[k]) for lg in logs])))
                   for k in self.objective.log_names},
            }
            self._validate(val)
            self.logged_metrics["time/epoch_s"] = time.perf_counter() - t0  # train + validation + hooks
            self.history.append(dict(self.logged_metrics))
            self.epoch_step = 0
            self._call_hook("on_train_epoch_end")
            self.current_epoch += 1
            if timed and self.current_epoch < self.max_epochs and self._out_of_time():
                break
            if any_process(self._interrupt_requested):  # arrived in the epoch's last steps: stop at the boundary
                raise self._interruption(f"interrupted after epoch {self.current_epoch - 1}")
        if self.time_limit_reached:
            where = f"epoch {self.current_epoch}, step {self.global_step}"
            self.stop_reason = f"max_time={self.max_time:g} s reached at {where}; resume to continue"
        elif self.current_epoch >= self.max_epochs and not self.stop_reason:
            self.stop_reason = f"reached max_epochs={self.max_epochs}"
        self.summary.update({
            "epochs_run": self.current_epoch, "stop_reason": self.stop_reason, "compile_s": compile_s,
            "wall_s": time.perf_counter() - fit_start, "train_s": train_time,
            "tracks_per_s": tracks_seen / train_time if train_time else None,
        })


    def _out_of_time(self) -> bool:
        """Whether `max_time` has passed (in any process: all stop at the same step); records it."""
        self.time_limit_reached = any_process(time.perf_counter() - self._fit_t0 >= self.max_time)
        return self.time_limit_reached


__all__ = ["Trainer", "PRECISIONS"]

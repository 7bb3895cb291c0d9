"""`TrackDataModule`: load → select momentum range → split → preprocess → device arrays."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError
from ..utils import stable_hash
from .files import DEFAULT_TREE
from .io import TrackTable, load_tracks, read_table, tracks_from_frame, write_table
from .layouts import get_layout
from .preprocess import Preprocessor
from .schema import CLASS_NAMES, DEFAULT_SENTINELS, NUM_CLASSES, DetectorGroup, FeatureLayout
from .selection import TrackSelection
from .simulate import SimulatorConfig, simulate

MOMENTUM_RANGES: dict[str, tuple[float, float]] = {
    "full": (0.1, math.inf),
    "mid": (0.7, 1.5),
    "high": (1.0, 3.0),
}
SIMULATION_CACHE_VERSION = 2  # bump when the simulator's output for a config changes


class TrackArrays(NamedTuple):
    """One split as arrays (a pytree, so it can live on the device).

    - `features`: `f32[N, F]` preprocessed features (see `FeatureLayout.feature_names`).
    - `group_mask`: `bool[N, G]` detector group present.
    - `label`: `i32[N]` class index (π, K, p, e), -1 where unlabelled.
    - `p`: `f32[N]` total momentum in GeV/c (for momentum-binned metrics).
    """

    features: Any
    group_mask: Any
    label: Any
    p: Any

    @property
    def num_tracks(self) -> int:
        return int(self.label.shape[0])


def resolve_momentum_range(value) -> tuple[float, float]:
    """A named range (`full`, `mid`, `high`) or explicit `[low, high]` bounds in GeV/c."""
    if isinstance(value, str):
        if value not in MOMENTUM_RANGES:
            raise DataError(f"unknown momentum range {value!r}; named ranges are {sorted(MOMENTUM_RANGES)} "
                            "or give [low, high] in GeV/c")
        return MOMENTUM_RANGES[value]
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"momentum range must be a name {sorted(MOMENTUM_RANGES)} or [low, high], got {value!r}") from None
    if not lo < hi:
        raise DataError(f"momentum range needs low < high, got [{lo}, {hi}]")
    return lo, hi


def cache_dir() -> Path:
    return Path(os.environ.get("PIDX_CACHE_DIR", Path.home() / ".cache" / "pidx"))


def simulated_tracks(config: SimulatorConfig, *, use_cache: bool = True):
    """Simulate (or read from the on-disk cache, keyed by every parameter) a track table."""
    if not use_cache:
        return simulate(config)
    key = stable_hash({"v": SIMULATION_CACHE_VERSION, **config.to_dict()})
    path = cache_dir() / f"simulated-{key}.parquet"
    if path.is_file():
        return read_table(path)
    df = simulate(config)
    write_table(df, path)
    return df


@dataclasses.dataclass
class TrackDataModule:
    """Everything that turns a track source into train/validation/test arrays.

    **Arguments:**

    - `source`: `"simulate"`, or a ROOT/CSV/Parquet file, a directory or a glob of them.
    - `simulator`: `SimulatorConfig` (or a dict of its fields) when `source` is `simulate`.
    - `momentum_range`: `full` (p > 0.1), `mid` (0.7–1.5), `high` (1–3 GeV/c) or `(low, high)`.
    - `momentum_variable`: `"p"` (total momentum, default) or `"pt"`.
    - `seed`: seed of the stratified split (default 231).
    - `test_fraction`: share of the selected tracks held out for testing (0.2).
    - `val_fraction`: share of the selected tracks carved from the training part for
      validation (0.1): early stopping and checkpointing never see the test split.
    - `track_layout`: `auto` (detected from the columns), `o2` or `legacy`; for the
      simulator, the layout it writes (`auto` = `o2`).
    - `tree`: the TTree of ROOT files (`pid_features`).
    - `selection`: DPG track selection (`TrackSelection`), applied before the momentum range.
    - `extra_groups`: detector groups added to the layout's own (before kinematics).
    - `layout`: detector groups the model sees; `None` = the file layout's groups plus
      `extra_groups` (set once the data is loaded).
    - `sentinels`, `drop_unknown_pdg`, `on_invalid`: see `pidx.data.io.validate_tracks`.
    - `clip`: clip of the robust scaling.
    - `use_cache`: cache simulated tables on disk (`$PIDX_CACHE_DIR`, default ~/.cache/pidx).
    """

    source: str = "simulate"
    simulator: SimulatorConfig | dict | None = None
    momentum_range: str | tuple[float, float] = "full"
    momentum_variable: str = "p"
    seed: int = 231
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    track_layout: str = "auto"
    tree: str = DEFAULT_TREE
    selection: TrackSelection | None = None
    extra_groups: tuple[DetectorGroup, ...] = ()
    layout: FeatureLayout | None = None
    sentinels: tuple[float, ...] = DEFAULT_SENTINELS
    drop_unknown_pdg: bool = False
    on_invalid: str = "error"
    clip: float = 20.0
    use_cache: bool = True

    def __post_init__(self):
        if isinstance(self.simulator, dict):
            self.simulator = SimulatorConfig.from_dict(self.simulator)
        self.bounds = resolve_momentum_range(self.momentum_range)
        if self.momentum_variable not in ("p", "pt"):
            raise DataError(f"momentum_variable must be 'p' or 'pt', got {self.momentum_variable!r}")
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1
                and self.test_fraction + self.val_fraction < 1):
            raise DataError("need 0 < test_fraction, val_fraction and test_fraction + val_fraction < 1, "
                            f"got {self.test_fraction}, {self.val_fraction}")
        self.preprocessor: Preprocessor | None = None
        self.tables: dict[str, TrackTable] = {}
        self._arrays: dict[str, TrackArrays] = {}

    # ------------------------------------------------------------------ loading
    def load_table(self) -> TrackTable:
        """Read (or simulate), select and validate the tracks; fixes `layout` on first use."""
        kwargs = dict(sentinels=self.sentinels, drop_unknown_pdg=self.drop_unknown_pdg, on_invalid=self.on_invalid,
                      selection=self.selection, layout=self.layout, extra_groups=self.extra_groups)
        if self.source == "simulate":
            cfg = self.simulator or SimulatorConfig()
            if self.track_layout != "auto" and cfg.layout != self.track_layout:
                cfg = dataclasses.replace(cfg, layout=self.track_layout)
            table = tracks_from_frame(simulated_tracks(cfg, use_cache=self.use_cache), track_layout=cfg.layout,
                                      source=f"simulator(n_tracks={cfg.n_tracks}, seed={cfg.seed})", **kwargs)
        else:
            table = load_tracks(self.source, tree=self.tree, track_layout=self.track_layout, **kwargs)
        if self.layout is None:
            self.layout = get_layout(table.layout).features.with_groups(self.extra_groups)
        return table

    def select_momentum(self, table: TrackTable) -> TrackTable:
        lo, hi = self.bounds
        value = table.momentum if self.momentum_variable == "p" else table.frame["pt"].to_numpy(np.float64)
        rows = np.flatnonzero((value > lo) & (value < hi))
        if len(rows) == 0:
            raise DataError(f"{table.source}: no tracks with {lo} < {self.momentum_variable} < {hi} GeV/c; "
                            f"the data spans {self.momentum_variable} = {np.nanmin(value):.3g}–"
                            f"{np.nanmax(value):.3g} GeV/c")
        return table.subset(rows)

    def split_indices(self, labels: np.ndarray, source: str) -> dict[str, np.ndarray]:
        """Stratified train/val/test row indices, deterministic for `seed`."""
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        rare = [f"{CLASS_NAMES[c]} ({counts[c]})" for c in range(NUM_CLASSES) if 0 < counts[c] < 3]
        if rare:
            raise DataError(f"{source}: classes {', '.join(rare)} have too few tracks to split into "
                            "train/validation/test (need >= 3 each, or none)")
        idx = np.arange(len(labels))
        try:
            from sklearn.model_selection import train_test_split  # lazy: sklearn costs ~2 s to import

            rest, test = train_test_split(idx, test_size=self.test_fraction, stratify=labels,
                                          random_state=self.seed)
            val_share = self.val_fraction / (1.0 - self.test_fraction)
            train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest],
                                          random_state=self.seed)
        except ValueError as exc:
            raise DataError(f"{source}: cannot split {len(labels)} tracks: {exc}") from None
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def setup(self) -> "TrackDataModule":
        """Load, select, split and preprocess; idempotent."""
        if self._arrays:
            return self
        table = self.select_momentum(self.load_table())
        if table.labels is None:
            raise DataError(f"{table.source}: column 'mc_pdg' is needed for training")
        splits = self.split_indices(table.labels, table.source)
        self.tables = {name: table.subset(rows) for name, rows in splits.items()}
        self.preprocessor = Preprocessor.fit(self.tables["train"], self.layout, clip=self.clip,
                                             track_layout=table.layout)
        for name, t in self.tables.items():
            self._arrays[name] = self.to_arrays(t)
        return self

    def to_arrays(self, table: TrackTable) -> TrackArrays:
        """Preprocess any validated table with the fitted statistics."""
        if self.preprocessor is None:
            raise DataError("TrackDataModule.setup() must run before to_arrays()")
        return arrays_from_table(table, self.preprocessor)

    # ------------------------------------------------------------------ access
    def _get(self, name: str) -> TrackArrays:
        if not self._arrays:
            self.setup()
        return self._arrays[name]

    @property
    def train(self) -> TrackArrays:
        return self._get("train")

    @property
    def val(self) -> TrackArrays:
        return self._get("val")

    @property
    def test(self) -> TrackArrays:
        return self._get("test")

    @property
    def class_counts(self) -> np.ndarray:
        """Tracks per class in the train split (π, K, p, e)."""
        return np.bincount(np.asarray(self.train.label), minlength=NUM_CLASSES)

    def summary(self) -> dict:
        out = {"source": self.source, "momentum_range": list(self.bounds),
               "momentum_variable": self.momentum_variable}
        first = next(iter(self.tables.values()), None)
        if first is not None:
            out["layout"] = first.layout
            out.update(first.summary)
        for name, t in self.tables.items():
            out[name] = {"n_tracks": len(t),
                         "class_counts": dict(zip(CLASS_NAMES, np.bincount(t.labels, minlength=NUM_CLASSES).tolist())),
                         "group_availability": {g.name: float(t.frame[g.flag].mean()) for g in self.layout.flagged_groups}}
        dropped = next(iter(self.tables.values())).dropped if self.tables else {}
        if dropped:
            out["dropped"] = dropped
        return out


def arrays_from_table(table: TrackTable, preprocessor: Preprocessor) -> TrackArrays:
    import jax.numpy as jnp

    feats, mask = preprocessor.transform(table)
    labels = table.labels if table.labels is not None else np.full(len(table), -1, np.int32)
    return TrackArrays(jnp.asarray(feats), jnp.asarray(mask), jnp.asarray(labels, dtype=jnp.int32),
                       jnp.asarray(table.momentum, dtype=jnp.float32))


__all__ = ["MOMENTUM_RANGES", "TrackArrays", "TrackDataModule", "ArrayDataModule", "resolve_momentum_range",
           "simulated_tracks", "arrays_from_table", "cache_dir"]


class ArrayDataModule:
    """A data module over ready arrays (already preprocessed), e.g. for synthetic problems.

    **Arguments:**

    - `train`, `val`, `test`: `TrackArrays` (test optional).
    - `preprocessor`: travels with checkpoints if given.
    """

    def __init__(self, train: TrackArrays, val: TrackArrays, test: TrackArrays | None = None,
                 preprocessor: Preprocessor | None = None):
        self.train, self.val, self.test, self.preprocessor = train, val, test, preprocessor

    def setup(self) -> "ArrayDataModule":
        return self

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(np.asarray(self.train.label), minlength=NUM_CLASSES)

"""`TrackDataModule`: load → select momentum range → split → preprocess → device arrays."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..utils import parse_bytes, stable_hash
from .arrays import ArrayDataModule, TrackArrays, arrays_from_table
from .files import DEFAULT_TREE, expand_sources
from .group import ProcessGroup
from .io import TrackTable, load_tracks, tracks_from_frame
from .species import set_aside_other_species
from .layouts import get_layout
from .preprocess import DEFAULT_CLIP, DEFAULT_KNEE, Preprocessor
from .schema import CLASS_NAMES, DEFAULT_SENTINELS, NUM_CLASSES, DetectorGroup, FeatureLayout
from .selection import TrackSelection
from .sources import read_named
from .stream import SPLITS, estimated_memory
from .stream_build import build_stream_cache
from .stream_cache import STREAM_CACHE_VERSION, ChunkedTracks, StreamCache
from .target import load_target, target_summary

MOMENTUM_RANGES: dict[str, tuple[float, float]] = {
    "full": (0.1, math.inf),
    "mid": (0.7, 1.5),
    "high": (1.0, 3.0),
}


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


def physical_memory() -> int:
    """Bytes of memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cache_dir() -> Path:
    return Path(os.environ.get("PIDX_CACHE_DIR", Path.home() / ".cache" / "pidx"))


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
    - `sentinels`, `on_invalid`, `implausible`: see `pidx.data.validate.validate_tracks`.
    - `other_species`: tracks of species other than π, K, p, e (muons, nuclei, fakes): never trained
      on; `contamination` (default) keeps the validation and test shares of them, in `contamination`,
      so that purities and working points count them; `exclude` drops them; `error` refuses the file.
      Either way they are counted per species in `summary()`. A streamed source excludes them.
    - `drop_unknown_pdg`: the former name of `other_species="exclude"`.
    - `clip`, `knee`: clip and logarithmic-tail knee of the robust scaling (`pidx.data.Preprocessor`).
    - `use_cache`: cache simulated tables on disk (`$PIDX_CACHE_DIR`, default ~/.cache/pidx).
    - `memory_budget`: bytes (or `"4GB"`, ...) the data may take in host memory; `"auto"` = half the
      machine's memory. Files whose in-memory estimate (`pidx.data.stream.estimated_memory`) exceeds it
      are streamed (`pidx.data.stream`): split by a seeded hash of each track, preprocessed into a cache on
      disk and trained from chunk by chunk; `train`, `val` and `test` are then `ChunkedTracks`, and
      `tables` hold seeded samples of `sample_tracks` tracks per split.
    - `sample_tracks`: streamed data: tracks per split in the seeded sample (preprocessing statistics
      from the train sample; tree baselines and the report on the samples).
    - `chunk_tracks`: streamed data: tracks per chunk (default: a sixteenth of the budget, in multiples of 65,536).
    - `target_source`: unlabelled data (file, directory or glob) read as `pidx.data.target` says: `target`
      (`TrackArrays`) and `target_table`, for objectives that adapt to it and MC-vs-data comparisons.
    - `group`: the processes reading the data together (default: JAX's, `ProcessGroup.current()`). They
      stream if any of them is over its budget, each process reading its share of the files into one
      cache that they must share; under the budget each loads every file.
    """

    source: str = "simulate"
    simulator: Any = None  # a pidx.simulation.SimulatorConfig, or a dict of its fields
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
    other_species: str = "contamination"
    implausible: str = "absent"
    clip: float = DEFAULT_CLIP
    knee: float | None = DEFAULT_KNEE
    use_cache: bool = True
    memory_budget: int | str = "auto"
    sample_tracks: int = 200_000
    chunk_tracks: int | None = None
    target_source: str | None = None
    group: ProcessGroup | None = None

    def __post_init__(self):
        self.bounds = resolve_momentum_range(self.momentum_range)
        if self.momentum_variable not in ("p", "pt"):
            raise DataError(f"momentum_variable must be 'p' or 'pt', got {self.momentum_variable!r}")
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1
                and self.test_fraction + self.val_fraction < 1):
            raise DataError("need 0 < test_fraction, val_fraction and test_fraction + val_fraction < 1, "
                            f"got {self.test_fraction}, {self.val_fraction}")
        try:
            self.budget_bytes = physical_memory() // 2 if self.memory_budget == "auto" else parse_bytes(
                self.memory_budget, what="memory budget")
        except ValueError as exc:
            raise DataError(str(exc)) from None
        if self.sample_tracks < 1000 or (self.chunk_tracks is not None and self.chunk_tracks < 1):
            raise DataError(f"need sample_tracks >= 1000 and chunk_tracks >= 1, got {self.sample_tracks}, "
                            f"{self.chunk_tracks}")
        self.preprocessor: Preprocessor | None = None
        self.tables: dict[str, TrackTable] = {}
        self._arrays: dict[str, TrackArrays | ChunkedTracks] = {}
        self.stream: StreamCache | None = None
        self.sample_positions: dict[str, np.ndarray] = {}  # streamed: rows of `tables` in each split
        self.contamination: dict[str, TrackTable] = {}  # other species' validation and test shares
        self.other_species_split: dict[str, dict[str, int]] = {}
        self._piece_layout: str | None = None
        self.target: TrackArrays | None = None  # and target_table: the target sample, when given
        self.target_table: TrackTable | None = None
        self.train_weight: np.ndarray | None = None  # per-track weights of the train split, when set

    # ------------------------------------------------------------------ loading
    def load_table(self) -> TrackTable:
        """Read (or simulate), select and validate the tracks; fixes `layout` on first use."""
        kwargs = self._reading_rules()
        if self.source == "simulate":  # the embedded simulator (pidx.simulation), cached on disk
            frame, layout, what = read_named("simulate", self.simulator, track_layout=self.track_layout,
                                             use_cache=self.use_cache)
            table = tracks_from_frame(frame, track_layout=layout, source=what, **kwargs)
        else:
            table = load_tracks(self.source, tree=self.tree, track_layout=self.track_layout, **kwargs)
        self._fix_layout(table)
        return table

    def _reading_rules(self) -> dict:
        """How every table is validated, whole (`load_table`) or streamed piece by piece."""
        return dict(sentinels=self.sentinels, other_species=self.species_policy, on_invalid=self.on_invalid,
                    implausible=self.implausible, selection=self.selection, layout=self.layout,
                    extra_groups=self.extra_groups)

    @property
    def species_policy(self) -> str:
        """What happens to tracks of other species (`drop_unknown_pdg` is its former name)."""
        return "exclude" if self.drop_unknown_pdg else self.other_species

    def _fix_layout(self, table: TrackTable) -> None:
        if self.layout is None:  # the file layout's groups plus the extra ones, fixed by the first table read
            self.layout = get_layout(table.layout).features.with_groups(self.extra_groups)

    def _momentum(self, table: TrackTable) -> np.ndarray:
        return table.momentum if self.momentum_variable == "p" else table.frame["pt"].to_numpy(np.float64)

    def in_momentum_range(self, table: TrackTable) -> np.ndarray:
        """Whether each track of `table` is inside the momentum range (a missing momentum is not)."""
        lo, hi = self.bounds
        value = self._momentum(table)
        with np.errstate(invalid="ignore"):
            return (value > lo) & (value < hi)

    def _in_range(self, table: TrackTable) -> np.ndarray:
        """Rows inside the momentum range."""
        return np.flatnonzero(self.in_momentum_range(table))

    def select_momentum(self, table: TrackTable) -> TrackTable:
        lo, hi = self.bounds
        rows = self._in_range(table)
        if len(rows) == 0:
            value = self._momentum(table)
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
        """Load, select, split and preprocess (or stream, over the memory budget); idempotent."""
        if self._arrays:
            return self
        if self.source != "simulate":
            files = expand_sources(self.source)
            self.group = self.group or ProcessGroup.current()
            if self.group.flags(estimated_memory(files, tree=self.tree) > self.budget_bytes).any():
                return self._setup_streamed(files)
        table = self.select_momentum(self.load_table())
        if table.labels is None:
            raise DataError(f"{table.source}: column 'mc_pdg' is needed for training")
        table = self._set_aside_other_species(table)
        splits = self.split_indices(table.labels, table.source)
        self.tables = {name: table.subset(rows) for name, rows in splits.items()}
        self.preprocessor = Preprocessor.fit(self.tables["train"], self.layout, clip=self.clip, knee=self.knee,
                                             track_layout=table.layout)
        for name, t in self.tables.items():
            self._arrays[name] = self.to_arrays(t)
        self._load_target(table.layout)
        return self

    def _load_target(self, track_layout: str) -> None:
        if self.target_source is not None:
            self.target_table, self.target = load_target(self.target_source, tree=self.tree, track_layout=track_layout,
                rules=self._reading_rules(), in_range=self.in_momentum_range, preprocessor=self.preprocessor)

    def _set_aside_other_species(self, table: TrackTable) -> TrackTable:
        table, self.contamination, self.other_species_split = set_aside_other_species(
            table, seed=self.seed, test_fraction=self.test_fraction, val_fraction=self.val_fraction)
        return table

    # ------------------------------------------------------------------ streaming
    @property
    def streamed(self) -> bool:
        """Whether the splits are streamed from disk (`ChunkedTracks`) rather than held on the device."""
        return self.stream is not None

    def _stream_key(self, files) -> str:
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return stable_hash({
            "v": STREAM_CACHE_VERSION, "files": stats, "tree": self.tree, "track_layout": self.track_layout,
            "extra_groups": [dataclasses.asdict(g) for g in self.extra_groups],
            "layout": None if self.layout is None else self.layout.to_dict(),
            "selection": None if self.selection is None else dataclasses.asdict(self.selection),
            "bounds": list(self.bounds), "momentum_variable": self.momentum_variable, "seed": self.seed,
            "fractions": [self.test_fraction, self.val_fraction], "sentinels": list(self.sentinels),
            "drop_unknown_pdg": self.drop_unknown_pdg, "on_invalid": self.on_invalid, "clip": self.clip,
            "other_species": self.species_policy, "implausible": self.implausible,
            "knee": self.knee, "sample_tracks": self.sample_tracks})

    def _prepare_piece(self, frame, dtypes, source: str) -> TrackTable:
        """One streamed piece: validated as `load_table` validates a file, cut to the momentum range."""
        rules = self._reading_rules()
        if rules["other_species"] == "contamination":  # a streamed source trains on π/K/p/e, counts the rest
            rules["other_species"] = "exclude"
        table = tracks_from_frame(frame, source=source, track_layout=self._piece_layout or self.track_layout,
                                  dtypes=dtypes, **rules)
        if table.summary.get("other_species"):  # per species, in `dropped`, which the pieces add up
            table.dropped.update({f"other species: {k}": v
                                  for k, v in table.summary.pop("other_species")["tracks"].items()})
        self._piece_layout = table.layout  # every piece of every file in the first piece's layout
        self._fix_layout(table)
        return table.subset(self._in_range(table))

    def default_chunk_tracks(self) -> int:
        """A sixteenth of the budget per chunk, in multiples of 65,536 tracks, at most 4 Mi: the chunk
        trained on, the next one read ahead and their device copies take a quarter of it."""
        lay = self.layout
        per_track = 4 * lay.num_features + lay.num_groups + 8
        return int(max(1, min(64, self.budget_bytes // (16 * per_track) // 65536))) * 65536

    def _setup_streamed(self, files) -> "TrackDataModule":
        what = str(files[0]) if len(files) == 1 else f"{self.source} ({len(files)} files)"
        self.stream = build_stream_cache(
            cache_dir() / f"stream-{self._stream_key(files)}", files, prepare=self._prepare_piece,
            feature_layout=lambda: self.layout, seed=self.seed, test_fraction=self.test_fraction,
            val_fraction=self.val_fraction, sample_tracks=self.sample_tracks, clip=self.clip, knee=self.knee,
            tree=self.tree, source=what, group=self.group)
        self.preprocessor = self.stream.preprocessor
        self.layout = self.preprocessor.layout
        chunk = self.chunk_tracks or self.default_chunk_tracks()
        for name in SPLITS:
            self._arrays[name] = self.stream.split(name, chunk, self.seed)
            self.tables[name], self.sample_positions[name] = self.stream.sample(name)
        self._load_target(self.stream.meta["track_layout"])
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
        if self.streamed:
            return np.asarray(list(self.stream.meta["splits"]["train"]["class_counts"].values()), np.int64)
        return np.bincount(np.asarray(self.train.label), minlength=NUM_CLASSES)

    def summary(self) -> dict:
        """What was read: per split the tracks, classes and detector availability, what was dropped and
        why; with a target sample, its tracks, availability and what reading it dropped."""
        out = self._summary()
        if self.target_table is not None:
            out["target"] = target_summary(self.target_table, self.layout)
        return out

    def _summary(self) -> dict:
        out = {"source": self.source, "momentum_range": list(self.bounds),
               "momentum_variable": self.momentum_variable}
        if self.streamed:
            return {**out, **self._streamed_summary()}
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
        if self.other_species_split:  # in the momentum range, per split: where the contamination went
            out["other_species"] = {**out.get("other_species", {}), "policy": self.species_policy,
                                    "in_range": dict(self.other_species_split),
                                    "excluded_from_training": sum(self.other_species_split["train"].values()),
                                    "contamination": {k: len(t) for k, t in self.contamination.items()}}
        return out

    def _streamed_summary(self) -> dict:
        meta = self.stream.meta
        out = {"layout": meta["track_layout"], **meta["summary"],
               "streamed": {"cache": str(self.stream.directory), "chunk_tracks": self.train.chunk_tracks,
                            "memory_budget_bytes": self.budget_bytes, "sample_tracks": self.sample_tracks,
                            "split": "seeded hash of each track's values"}}
        for name in SPLITS:
            split = meta["splits"][name]
            n = split["num_tracks"]
            out[name] = {"n_tracks": n, "class_counts": split["class_counts"],
                         "group_availability": {g.name: split["flag_counts"].get(g.flag, 0) / n
                                                for g in self.layout.flagged_groups}}
        if meta["dropped"]:
            out["dropped"] = meta["dropped"]
        return out


__all__ = ["physical_memory", "MOMENTUM_RANGES", "TrackArrays", "TrackDataModule", "ArrayDataModule", "resolve_momentum_range",
           "arrays_from_table", "cache_dir"]

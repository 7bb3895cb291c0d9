"""The run directory as one object: its files, and reading and writing them.

```
runs/<recipe>/<timestamp>/
  recipe.yaml                the resolved recipe (every default filled in)
  history.csv                one row per epoch
  checkpoints/               best (top-k by the monitored metric), last/, final/ (see `pidx.runs.result`)
  metrics.json               test metrics, majority baseline, training and data summaries, calibration, baselines
  calibration.json           the posterior map fitted on the validation split (evaluation.posterior)
  test_predictions.parquet   per-track test probabilities of the model and every baseline
  report/                    figures and report.md
```
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd

from ..data.io import write_table
from ..errors import CheckpointError, PidxError, RecipeError
from ..recipe import Recipe, dump_recipe, read_yaml, validate_recipe
from ..training.checkpoint import read_meta
from ..training.posterior import PosteriorMap
from ..utils import atomic_write_json, atomic_write_text


def finite(obj):
    """JSON has no NaN: None instead, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


LOCK_FILE = ".pidx.lock"


class RunInUseError(PidxError):
    """Another pidx process holds the run directory."""


@contextlib.contextmanager
def exclusive_run(path: str | Path):
    """Hold `path` (a run directory, created if needed) for one process inside the block.

    An exclusive `flock` on `<path>/.pidx.lock`, which names the holder's PID: a second process
    gets a `RunInUseError` naming it. The kernel drops the lock when its holder exits, however it
    exits (`kill -9` included), so a crashed run can be resumed at once.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunInUseError(f"{path}: in use by another pidx process (PID {holder}); wait for it to finish, or "
                            "choose another --output") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (it is how the next holder finds it)


class RunDir:
    """One run directory: the names of its files and their reading and writing.

    **Arguments:**

    - `path`: the directory.
    """

    RECIPE, METRICS, CALIBRATION = "recipe.yaml", "metrics.json", "calibration.json"
    PREDICTIONS, HISTORY, REPORT, CHECKPOINTS = "test_predictions.parquet", "history.csv", "report", "checkpoints"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def create(cls, name: str, output: str | Path | None, *, overwrite: bool = False) -> "RunDir":
        """A new, empty run directory: `output`, or `runs/<name>/<timestamp>` when None."""
        if output is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path, n = Path("runs") / name / stamp, 1
            while path.exists():
                path, n = Path("runs") / name / f"{stamp}-{n}", n + 1
        else:
            path = Path(output)
            content = [p for p in path.iterdir() if p.name != LOCK_FILE] if path.is_dir() else []
            if content and not overwrite:
                raise RecipeError(f"{path}: output directory exists and is not empty; pass --overwrite to replace "
                                  "it, --resume to continue it, or choose another --output")
            for p in content if overwrite else ():  # the lock file stays: its holder is replacing the run
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run directory (one with a recipe.yaml)."""
        run = cls(path)
        if not (run / cls.RECIPE).is_file():
            raise RecipeError(f"{run.path}: not a pidx run directory (no {cls.RECIPE})")
        return run

    # ------------------------------------------------------------------ files
    def recipe(self) -> Recipe:
        return validate_recipe(read_yaml(self / self.RECIPE))

    def write_recipe(self, recipe: Recipe) -> None:
        atomic_write_text(self / self.RECIPE, dump_recipe(recipe))

    def metrics(self) -> dict:
        """metrics.json's content ({} before the run finished)."""
        path = self / self.METRICS
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_metrics(self, metrics: dict) -> dict:
        metrics = finite(metrics)
        atomic_write_json(self / self.METRICS, metrics)
        return metrics

    def posterior_map(self) -> PosteriorMap | None:
        """The map from the network's outputs to posteriors, or None (raw outputs)."""
        path = self / self.CALIBRATION
        if not path.is_file():
            return None
        try:
            fitted = json.loads(path.read_text())
            if "posterior" not in fitted and "temperature" in fitted:  # before posteriors: a temperature only
                return PosteriorMap(temperature=float(fitted["temperature"]))
            return None if fitted["posterior"] is None else PosteriorMap.from_dict(fitted["posterior"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable calibration file ({exc}); delete it or re-run pidx fit") \
                from None

    def write_calibration(self, fitted: dict) -> None:
        atomic_write_json(self / self.CALIBRATION, fitted)

    def history(self) -> list[dict]:
        path = self / self.HISTORY
        return pd.read_csv(path).to_dict("records") if path.is_file() else []

    def predictions(self) -> pd.DataFrame | None:
        path = self / self.PREDICTIONS
        return pd.read_parquet(path) if path.is_file() else None

    def write_predictions(self, frame: pd.DataFrame) -> None:
        write_table(frame, self / self.PREDICTIONS)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, name: str) -> Path:
        return self.path / self.CHECKPOINTS / name

    def newest_checkpoint(self) -> Path | None:
        """The checkpoint to continue from: of `interrupted` and `last`, the one with the most steps
        (an unreadable one does not count); None when there is neither."""
        found = []
        for name in ("interrupted", "last"):
            try:
                found.append((read_meta(self.checkpoint(name))["global_step"], name == "interrupted", name))
            except CheckpointError:
                continue
        return self.checkpoint(max(found)[2]) if found else None

    @classmethod
    def latest_with_checkpoint(cls, name: str) -> "RunDir | None":
        """The newest run of recipe `name` under runs/<name>/ that has a checkpoint to continue from."""
        base = Path("runs") / name
        runs = sorted(base.glob("*"), reverse=True) if base.is_dir() else []
        return next((cls(p) for p in runs if cls(p).newest_checkpoint() is not None), None)

    def relative(self, path: str | Path) -> str:
        """`path` relative to the run directory when inside it (as metrics.json records it)."""
        path = Path(path)
        return str(path.relative_to(self.path)) if path.is_relative_to(self.path) else str(path)

    def best_checkpoint(self, metrics: dict | None = None) -> Path:
        """The checkpoint of the run's model (metrics.json's `training.best_checkpoint`)."""
        metrics = self.metrics() if metrics is None else metrics
        rel = metrics.get("training", {}).get("best_checkpoint")
        candidates = ([self.path / rel] if rel else []) + [self.checkpoint("last")]
        for c in candidates:
            if c.is_dir():
                return c
        raise CheckpointError(f"{self.path}: no checkpoint found (looked for {', '.join(map(str, candidates))})")


__all__ = ["RunDir", "finite", "exclusive_run", "RunInUseError", "LOCK_FILE"]

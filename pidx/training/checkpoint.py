"""Atomic, versioned checkpoints of the whole training state.

A checkpoint is a directory, written under a temporary name and renamed into place,
so a crash never leaves a half-written one visible:

```
model.eqx         trainable weights (eqx.tree_serialise_leaves of the model's arrays)
model_state.eqx   eqx.nn.State (BatchNorm running statistics)
opt_state.eqx     optimizer state
extra-<name>.eqx  pytrees of callbacks (e.g. EarlyStopping's best weights)
meta.json         format version, epoch, step, seed, history, callback states,
                  preprocessing statistics, resolved config, sha256 of every file
```
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import equinox as eqx

from ..errors import CheckpointError
from ..models.embeddings import from_per_group_form, has_stacked_embeddings, per_group_form
from ..utils import atomic_dir, remove_dir

FORMAT_VERSION = 1
META = "meta.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(path: str | Path, *, trees: dict[str, object], meta: dict) -> Path:
    """Write `trees` (name → pytree) and `meta` (JSON) as one checkpoint directory."""
    from .._version import __version__

    path = Path(path)
    with atomic_dir(path) as tmp:
        files = {}
        for name, tree in trees.items():
            fname = f"{name}.eqx"
            eqx.tree_serialise_leaves(tmp / fname, tree)
            files[fname] = _sha256(tmp / fname)
        full = {"format_version": FORMAT_VERSION, "pidx_version": __version__, **meta, "files": files}
        (tmp / META).write_text(json.dumps(full, indent=1, default=_default))
    return path


def _default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def read_meta(path: str | Path) -> dict:
    """Read and check `meta.json` of a checkpoint (version, file list, checksums)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    meta_path = path / META
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: missing; {path} is not a complete pidx checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: corrupted ({exc})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, this pidx reads version "
                              f"{FORMAT_VERSION}; re-train or use the pidx version that wrote it "
                              f"({meta.get('pidx_version', 'unknown')})")
    for fname, digest in meta.get("files", {}).items():
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(f"{fpath}: missing from checkpoint")
        if _sha256(fpath) != digest:
            raise CheckpointError(f"{fpath}: corrupted or truncated (checksum mismatch)")
    return meta


def load_tree(path: str | Path, name: str, like):
    """Deserialise one pytree of a checkpoint into the structure of `like`.

    FSE group embeddings written one module per group (before they were stacked into one batched
    product) are read in that form and converted, in the weights, the optimizer's moments and any
    callback's copy of them alike."""
    fpath = Path(path) / f"{name}.eqx"
    try:
        return eqx.tree_deserialise_leaves(fpath, like)
    except FileNotFoundError:
        raise CheckpointError(f"{fpath}: missing from checkpoint") from None
    except Exception as exc:  # shape/dtype mismatch or truncated data
        error = exc
    if has_stacked_embeddings(like):
        try:
            return from_per_group_form(like, eqx.tree_deserialise_leaves(fpath, per_group_form(like)))
        except Exception:  # noqa: BLE001 - not that form either: report the first mismatch
            pass
    raise CheckpointError(f"{fpath}: does not match the model being loaded "
                          f"(different architecture or sizes?): {type(error).__name__}: {error}") from None


def remove_checkpoint(path: str | Path) -> None:
    path = Path(path)
    if (path / META).is_file():
        remove_dir(path)


__all__ = ["FORMAT_VERSION", "save_checkpoint", "read_meta", "load_tree", "remove_checkpoint"]

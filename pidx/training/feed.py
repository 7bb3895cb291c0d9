"""Where an epoch's batches come from, and evaluation of a split streamed from disk.

In memory, the train split is one device-resident chunk and an epoch is one shuffle of its rows,
exactly as before streaming existed. Streamed (`ChunkedTracks`), the epoch visits the chunks in
an order shuffled from the data's seed + epoch (the same for every ensemble member); each chunk is put on the device and its rows are shuffled from
the epoch's key folded with the chunk's index, while a thread reads the next chunk from disk. Since
chunk sizes, the order and every shuffle are pure functions of the seed, the epoch and the chunking,
the step count inside the epoch says exactly which chunk and which step a resumed fit starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from ..data.stream_cache import ChunkedTracks
from ..errors import TrainingError
from .parallel import DataParallel
from .step import make_permutation


class TrainFeed:
    """The train split's chunks and their shuffles.

    **Arguments:**

    - `train`: `TrackArrays` on the device, or a streamed `ChunkedTracks`.
    - `batch`: tracks per step (a chunk's last partial batch is left out of the epoch).
    - `parallel`: the fit's `DataParallel`, or None on one device.
    - `members`: an ensemble's member-vmapped keys and permutations.
    - `fold`: `fold_in` (vmapped over members for an ensemble).
    - `weight`: `f32[N]` per-track weights of the train split (all 1 when `None`).
    """

    def __init__(self, train, batch: int, *, parallel: DataParallel | None, members: bool, fold: Callable,
                 weight=None):
        self.train, self.batch, self.parallel, self.members, self.fold = train, batch, parallel, members, fold
        n = train.num_tracks
        self.weight = None if weight is None else np.asarray(weight, np.float32)
        if self.weight is not None and self.weight.shape != (n,):
            raise TrainingError(f"per-track weights: expected one per train track ({n}), got shape {self.weight.shape}")
        self.streamed = isinstance(train, ChunkedTracks)
        self.bounds = train.chunks if self.streamed else [(0, train.num_tracks)]
        self.steps = [(stop - start) // batch for start, stop in self.bounds]
        self.n_steps = sum(self.steps)
        if self.n_steps == 0:
            raise TrainingError(f"no chunk of the train split holds a whole batch of {batch} tracks "
                                f"(chunks of {self.bounds[0][1] - self.bounds[0][0]} tracks)")
        self._permutations: dict[int, Callable] = {}
        self._resident = None
        if not self.streamed:
            self._resident = self._place((train.features, train.group_mask, train.label, self.weights(0, n)))

    def weights(self, start: int, stop: int) -> np.ndarray:
        """The per-track weights of train tracks `start:stop` (ones when the fit has none)."""
        if self.weight is None:
            return np.ones(stop - start, np.float32)
        return self.weight[start:stop]

    @property
    def chunking(self) -> list[int]:
        """What a checkpoint records of the chunking: `[chunk_tracks, train tracks]` (streamed) or `[]`."""
        return [self.train.chunk_tracks, self.train.num_tracks] if self.streamed else []

    def _place(self, arrays):
        return self.parallel.replicate(arrays) if self.parallel is not None else jax.tree.map(jnp.asarray, arrays)

    def permutation(self, n_rows: int) -> Callable:
        if n_rows not in self._permutations:
            par = self.parallel
            self._permutations[n_rows] = make_permutation(
                n_rows, n_rows // self.batch, self.batch, members=self.members,
                sharding=None if par is None else par.rows(3 if self.members else 2, -1))
        return self._permutations[n_rows]

    def order(self, epoch: int) -> np.ndarray:
        """The chunks' order in `epoch` (always `[0]` in memory)."""
        if not self.streamed:
            return np.zeros(1, np.int64)
        return np.random.default_rng([self.train.seed, epoch]).permutation(len(self.bounds))

    def position(self, epoch: int, epoch_step: int) -> dict:
        """The chunk (index, rank in the epoch's order) and the step inside it of `epoch_step`."""
        done = 0
        for rank, j in enumerate(self.order(epoch)):
            if epoch_step < done + self.steps[j]:
                return {"chunk": int(j), "rank": rank, "step_in_chunk": epoch_step - done}
            done += self.steps[j]
        return {"chunk": None, "rank": len(self.bounds), "step_in_chunk": 0}

    def epoch(self, epoch_key, epoch: int, skip: int = 0) -> Iterator[tuple]:
        """`(data, idx, first)` per chunk still to train in `epoch` after `skip` steps: the chunk's
        `(features, mask, label, weight)` on the device, its shuffled rows `[(K,) steps, batch]` and the step
        to start from."""
        plan, done = [], 0
        for j in self.order(epoch):
            if self.steps[j] and done + self.steps[j] > skip:
                plan.append((int(j), max(0, skip - done)))
            done += self.steps[j]
        if not self.streamed:
            n = self.bounds[0][1]
            for _, first in plan:
                yield self._resident, self.permutation(n)(epoch_key), first
            return
        with ThreadPoolExecutor(max_workers=1) as pool:  # reads the next chunk while this one trains
            read = lambda j: (*self.train.read(*self.bounds[j])[:3], self.weights(*self.bounds[j]))  # noqa: E731
            pending = pool.submit(read, plan[0][0]) if plan else None
            for i, (j, first) in enumerate(plan):
                data = self._place(pending.result())  # the host copy goes once it is on the device
                pending = pool.submit(read, plan[i + 1][0]) if i + 1 < len(plan) else None
                n = self.bounds[j][1] - self.bounds[j][0]
                yield data, self.permutation(n)(self.fold(epoch_key, j)), first
                del data  # the caller dropped its reference too: one chunk on the device at a time


def steps_per_epoch(train, batch_size: int) -> int:
    """Steps of one epoch over `train` (in memory or streamed) at `batch_size`, as `TrainFeed` takes them."""
    bounds = train.chunks if isinstance(train, ChunkedTracks) else [(0, train.num_tracks)]
    batch = min(batch_size, train.num_tracks)
    return sum((stop - start) // batch for start, stop in bounds)


def resident_target(dm, objective, parallel: DataParallel | None):
    """The data module's unlabelled target sample `(features, mask)` on the device when `objective`
    trains on one (else `None`); an objective that needs one and data without one is an error."""
    target = getattr(dm, "target", None)
    if not objective.needs_target:
        return None
    if target is None:
        raise TrainingError(f"the objective {type(objective).__name__} trains on an unlabelled target sample; "
                            "the data has none")
    if target.num_tracks == 0:
        raise TrainingError("the target sample holds no track")
    arrays = (target.features, target.group_mask)
    return parallel.replicate(arrays) if parallel is not None else jax.tree.map(jnp.asarray, arrays)


def evaluate_chunks(run: Callable, split: ChunkedTracks) -> tuple[np.ndarray, float]:
    """`run(arrays) -> (probs, mean loss)` chunk by chunk over a streamed split: the probabilities
    joined on the track axis, the loss averaged over the labelled tracks."""
    probs, total, labelled = [], 0.0, 0
    for start, stop in split.chunks:
        arrays = split.read(start, stop)
        p, loss = run(arrays)
        probs.append(np.asarray(p))
        n = int(np.sum(arrays.label >= 0))
        if n:
            total, labelled = total + float(loss) * n, labelled + n
    return np.concatenate(probs, axis=-2), (total / labelled if labelled else float("nan"))


__all__ = ["TrainFeed", "steps_per_epoch", "resident_target", "evaluate_chunks"]

"""The processes of one run, as the data layer sees them: which one this is, how many there are, and
the two things they do together while reading data (wait for each other; agree that every one of
them succeeded). Under `jax.distributed` this is JAX's own process group; alone it is trivial."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from ..errors import DataError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Process `index` of `count` (0 of 1 for a run alone).

    **Arguments:**

    - `index`: this process's rank (`jax.process_index()`).
    - `count`: the processes of the run (`jax.process_count()`).
    """

    index: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> "ProcessGroup":
        """The group JAX runs in (after `jax.distributed.initialize`, all its processes)."""
        import jax

        return cls(jax.process_index(), jax.process_count())

    @property
    def is_first(self) -> bool:
        return self.index == 0

    def flags(self, flag: bool) -> np.ndarray:
        """`flag` of every process, in rank order (a collective: every process must call it)."""
        if self.count == 1:
            return np.array([bool(flag)])
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(np.int32(flag))).reshape(-1).astype(bool)

    def barrier(self, name: str) -> None:
        """Wait until every process gets here."""
        if self.count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def together(self, what: str, work: Callable[[], T]) -> T:
        """Run `work` in every process and go on only if it succeeded in all of them: a process whose
        `work` raised re-raises its own error, the others raise one naming the first that failed, so no
        process waits for ever on one that is gone."""
        error = None
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others know
            error, result = exc, None
        ok = self.flags(error is None)
        if error is not None:
            raise error
        if not ok.all():
            raise DataError(f"process {int(np.flatnonzero(~ok)[0])} of {self.count} failed while {what}; "
                            "its own output says why")
        return result


def file_shares(sizes: list[int], count: int) -> list[list[int]]:
    """Indices of the files each of `count` processes reads: the largest file first to the process with
    the fewest bytes so far (ties: the lower rank), so shares are balanced and the same in every process."""
    shares: list[list[int]] = [[] for _ in range(count)]
    load = [0] * count
    for j in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        k = min(range(count), key=lambda k: (load[k], k))
        shares[k].append(j)
        load[k] += sizes[j]
    return [sorted(s) for s in shares]


__all__ = ["ProcessGroup", "file_shares"]

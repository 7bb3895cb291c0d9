"""Data-parallel training on JAX's own engine: a `jax.sharding.Mesh` over devices.

The batch axis is sharded over the mesh; weights, optimizer state, BatchNorm state and
the device-resident data are replicated. XLA's SPMD partitioner turns the global-batch
mean of the loss into a gradient all-reduce and BatchNorm's batch statistics into
global-batch statistics, so `d` devices with batch `B` take the same steps as one
device with batch `B` (up to the order of float reductions).

Under `jax.distributed` (several processes, one or more devices each) the mesh spans
every process's devices; each process puts its own copy of the replicated arrays on its
local devices (`jax.make_array_from_callback`) and every process runs the same program.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..data.group import ProcessGroup
from ..errors import TrainingError

BATCH_AXIS = "batch"


def resolve_devices(devices: int | str | None = "auto") -> list:
    """The devices a fit runs on: `"auto"`/`None` → every device of the default backend (every
    process's under `jax.distributed`), an integer `d` → the first `d`."""
    available = jax.devices()
    if devices in (None, "auto"):
        return list(available)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise TrainingError(f"devices must be 'auto' or an integer >= 1, got {devices!r}")
    if devices > len(available):
        raise TrainingError(f"devices={devices} but the {available[0].platform} backend has {len(available)} "
                            f"device(s); use 'auto' or at most {len(available)}")
    if jax.process_count() > 1 and devices != len(available):
        raise TrainingError(f"devices={devices} with {jax.process_count()} processes: a multi-process run uses every "
                            f"device of every process ('auto' = {len(available)})")
    return list(available[:devices])


class DataParallel:
    """Placement of one data-parallel fit over `devices` (a 1-D mesh, axis `"batch"`).

    **Arguments:**

    - `devices`: the devices of the mesh (see `resolve_devices`).
    """

    def __init__(self, devices: list):
        self.mesh = Mesh(np.asarray(devices), (BATCH_AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        return self.mesh.size

    def rows(self, ndim: int, axis: int) -> NamedSharding:
        """Sharding of an `ndim`-dimensional array whose axis `axis` is split over the devices."""
        spec = [None] * ndim
        spec[axis] = BATCH_AXIS
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def replicate(self, tree):
        """Every array leaf of `tree` as a global array with a full copy on every device of the mesh
        (each process supplies its own devices' copies, so every process must hold the same values)."""
        def place(leaf):
            if not eqx.is_array(leaf):
                return leaf
            if isinstance(leaf, jax.Array) and leaf.sharding == self.replicated:
                return leaf
            host = np.asarray(leaf)
            return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

        return jax.tree.map(place, tree)


def data_parallel(devices: int | str | None = "auto") -> DataParallel | None:
    """A `DataParallel` placement over the resolved devices, or None for a single device
    (the plain single-device path, unchanged)."""
    resolved = resolve_devices(devices)
    return DataParallel(resolved) if len(resolved) > 1 else None


def to_local(tree):
    """Every array leaf of `tree` (replicated over a mesh, perhaps across processes) as an array on
    this process's default device: what one process computes with alone, e.g. the writer's evaluation."""
    return jax.tree.map(lambda a: jax.numpy.asarray(np.asarray(a)) if eqx.is_array(a) else a, tree)


def initialize_distributed(environ: Mapping[str, str] = os.environ) -> bool:
    """Join a `jax.distributed` group when the environment describes one; True if joined.

    - `PIDX_COORDINATOR_ADDRESS` (`host:port` of process 0), `PIDX_NUM_PROCESSES` and
      `PIDX_PROCESS_ID`: an explicit group (any launcher, or several processes on one machine);
    - otherwise a SLURM job step with more than one task (`srun`): JAX reads SLURM's variables
      (`SLURM_NTASKS`, `SLURM_PROCID`, the node list) itself.

    `PIDX_DISTRIBUTED=0` turns both off. Must run before anything else touches JAX's devices.
    """
    if environ.get("PIDX_DISTRIBUTED", "1") == "0":
        return False
    if "PIDX_COORDINATOR_ADDRESS" in environ:
        values = {}
        for name in ("PIDX_NUM_PROCESSES", "PIDX_PROCESS_ID"):
            try:
                values[name] = int(environ[name])
            except KeyError:
                raise TrainingError(f"PIDX_COORDINATOR_ADDRESS is set but {name} is not; set both "
                                    "PIDX_NUM_PROCESSES and PIDX_PROCESS_ID") from None
            except ValueError:
                raise TrainingError(f"{name}={environ[name]!r} is not an integer") from None
        n, i = values["PIDX_NUM_PROCESSES"], values["PIDX_PROCESS_ID"]
        if not 0 <= i < n:
            raise TrainingError(f"PIDX_PROCESS_ID={i} must be in 0..{n - 1} (PIDX_NUM_PROCESSES={n})")
        jax.distributed.initialize(environ["PIDX_COORDINATOR_ADDRESS"], num_processes=n, process_id=i)
        return True
    if int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in environ:
        jax.distributed.initialize()
        return True
    return False


def any_process(flag: bool) -> bool:
    """True if `flag` is true in any process (alone: `flag`). Lets every process of a group take the
    same branch, e.g. stop at the same step when a signal reached only some of them."""
    return bool(ProcessGroup.current().flags(flag).any())


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run gets here (nothing to wait for alone)."""
    ProcessGroup.current().barrier(name)


__all__ = ["BATCH_AXIS", "resolve_devices", "DataParallel", "data_parallel", "to_local", "initialize_distributed",
           "any_process", "barrier"]

"""Data parallelism: one `"data"` mesh axis over every device of every host.

The step functions are written per device (pmap's programming model) and wrapped with
`jax.shard_map` under `jax.jit`: the batch is split on `"data"`, parameters are replicated.
We pass `check_vma=False` and reduce explicitly with `lax.pmean`: under the default
`check_vma=True` the gradient of a replicated parameter comes back already summed over
devices, and a pmap-style `pmean` on top would give `n_devices ×` the gradient (docs/DESIGN.md).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vision_jax.models.from_config import DATA_AXIS as AXIS  # the one name of the mesh axis


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Calls `jax.distributed.initialize` when the config asks for it.

    With `distributed.coordinator_address`, `num_processes` and `process_id` set, they are
    used as given; left unset, JAX detects them (TPU pods, SLURM, Open MPI, or the
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables).
    On CPU the cross-process collectives need gloo, which we select here (the setting only
    concerns the CPU backend, and must be made before any backend starts, so we do not ask
    JAX which backend is in use).
    """
    d = config.distributed
    if not d.initialize:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if d.coordinator_address:
        kwargs["coordinator_address"] = d.coordinator_address
    if d.num_processes is not None:
        kwargs["num_processes"] = d.num_processes
    if d.process_id is not None:
        kwargs["process_id"] = d.process_id
    jax.distributed.initialize(**kwargs)


def make_mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice of the batch into one global array, split on `"data"`."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a host pytree (identical on every process) on every device."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def replicated_to_host(tree: Any) -> Any:
    """Fetches replicated arrays (metrics, parameters) to NumPy from this process's copy."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def to_host(tree: Any) -> Any:
    """Fetches batch-sharded arrays to NumPy on every process, gathered over hosts."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def data_parallel(per_device_fn: Callable, mesh: Mesh, in_specs: tuple, out_specs: Any, **jit_kwargs) -> Callable:
    """jit(shard_map(per_device_fn)) with explicit reductions (see the module docstring)."""
    mapped = jax.shard_map(per_device_fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    return jax.jit(mapped, **jit_kwargs)

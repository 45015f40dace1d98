"""orbax checkpoints of the train state: async, keep N, resume from the latest."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from vision_jax.train.state import TrainState


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def save(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Starts an async save of `state` at its step (a no-op if that step is saved)."""
    step = int(jax.device_get(state.step)) if jax.process_count() == 1 else int(state.step.addressable_data(0))
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, template: TrainState) -> TrainState | None:
    """Restores the latest checkpoint into `template`'s structure and shardings, or None."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))

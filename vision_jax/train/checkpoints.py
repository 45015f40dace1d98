"""orbax checkpoints of the train state: async, keep N, resume from the latest; and the
structure (leaf names, shapes, dtypes) of a saved state, read from its metadata without
restoring it, so that a resume that cannot work is refused before orbax is asked to."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from vision_jax.train.state import TrainState

# Leaf name ("opt_state.0.mu.backbone.conv1.kernel") -> (shape, dtype name).
Structure = dict[str, tuple[tuple[int, ...], str]]


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True)
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=options,
        item_handlers=ocp.StandardCheckpointHandler(),  # lets item_metadata read a step's tree
    )


def save(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Starts an async save of `state` at its step (a no-op if that step is saved)."""
    step = int(jax.device_get(state.step)) if jax.process_count() == 1 else int(state.step.addressable_data(0))
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.StandardSave(state))


def restore(manager: ocp.CheckpointManager, step: int, abstract: TrainState) -> TrainState:
    """The state saved at `step`, in `abstract`'s structure, shapes and shardings
    (a tree of jax.ShapeDtypeStruct with `sharding` set)."""
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def saved_structure(manager: ocp.CheckpointManager, step: int) -> Structure:
    """The leaves of the state saved at `step`, from its metadata (no array is read)."""
    metadata = manager.item_metadata(step)
    tree = getattr(metadata, "tree", metadata)
    return {
        _leaf_name(path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def structure(tree: Any) -> Structure:
    """The leaves of a state (arrays or jax.ShapeDtypeStruct), named as `saved_structure` names them."""
    return {
        _leaf_name(path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def structure_differences(saved: Structure, new: Structure, limit: int = 3) -> list[str]:
    """Up to `limit` readable differences, e.g. "params.head.kernel: [512, 10] float32 saved,
    [512, 11] float32 now"."""
    describe = lambda leaf: "absent" if leaf is None else f"{list(leaf[0])} {leaf[1]}"
    differences = [
        f"{name}: {describe(saved.get(name))} saved, {describe(new.get(name))} now"
        for name in sorted(saved.keys() | new.keys(), key=lambda name: (not name.startswith("params."), name))
        if saved.get(name) != new.get(name)
    ]
    more = len(differences) - limit
    return differences[:limit] + ([f"{more} more"] if more > 0 else [])


def _leaf_name(path) -> str:
    parts = []
    for entry in path:
        for attribute in ("name", "key", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)

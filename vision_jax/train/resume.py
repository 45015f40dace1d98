"""May a run resume with this config? Decided before anything is restored.

The test is the one orbax would fail on, made first and explained: the structure (leaf names,
shapes, dtypes) of the train state that the new config builds, against the one saved in the
checkpoint. Equal: the run resumes, and the config keys that differ from the saved config (a
learning rate, a number of steps) are returned for the loop to warn about and record. Different:
the resume is refused with the keys responsible, found by trying each changed key alone on top of
the saved config (the abstract state is traced, never computed, so a try costs a trace).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import ml_collections

from vision_jax.train import checkpoints, run_config

MAX_KEYS_TRIED = 12  # more changed keys than this: they are named together, not tried one by one


class ResumeRefusedError(ValueError):
    """The workdir's checkpoint cannot hold the state this config builds; nothing was restored."""


def check(
    workdir: str,
    step: int,
    saved: checkpoints.Structure,
    config: ml_collections.ConfigDict,
    structure_for: Callable[[ml_collections.ConfigDict], checkpoints.Structure],
) -> dict[str, tuple[Any, Any]]:
    """Returns the keys changed since the workdir's saved config (empty without one), or raises
    ResumeRefusedError naming the keys that change the saved state's structure.

    saved: the checkpoint's structure at `step`; structure_for(config): the structure of the train
    state that `config` builds (with this code and data).
    """
    saved_config = run_config.read_saved(workdir)
    changes = run_config.changed_keys(saved_config, run_config.as_dict(config)) if saved_config is not None else {}
    new = structure_for(config)
    if new == saved:
        return changes
    differences = "; ".join(checkpoints.structure_differences(saved, new))
    advice = "Train in a new --workdir, or set back the saved values. Nothing in the workdir was changed."
    head = f"Not restoring the checkpoint of {workdir} (step {step}), which this config does not fit"
    responsible = _responsible_keys(config, changes, saved, structure_for)
    if responsible:
        named = ", ".join(f"{key} ({changes[key][0]!r} saved, {changes[key][1]!r} now)" for key in responsible)
        raise ResumeRefusedError(
            f"{head}: {named} {'changes' if len(responsible) == 1 else 'change'} the shapes or structure of "
            f"the parameters or optimizer state "
            f"saved there ({differences}). {advice}"
        )
    if changes:
        raise ResumeRefusedError(
            f"{head}: the state this config builds does not match the saved one ({differences}); the config "
            f"differs from the saved config in {', '.join(changes)}. {advice}"
        )
    if saved_config is None:
        raise ResumeRefusedError(
            f"{head}: the state this config builds does not match the saved one ({differences}); the workdir "
            f"has no {run_config.CONFIG_FILE} to name the keys that differ. {advice}"
        )
    raise ResumeRefusedError(
        f"{head}: the state this config builds does not match the saved one ({differences}), though the "
        f"config is the saved one: did the data change (e.g. a class folder added or removed)? {advice}"
    )


def _responsible_keys(config, changes, saved, structure_for) -> list[str]:
    """The changed keys that alone, on top of the saved config, change the state's structure; []
    when the saved config itself (with this code and data) does not build the saved structure,
    or the keys cannot be set back one by one."""
    revertible = {k: v for k, v in changes.items() if run_config.ABSENT not in v}
    if not revertible or len(revertible) > MAX_KEYS_TRIED:
        return []
    saved_values = {key: old for key, (old, _) in revertible.items()}
    base = _with_values(config, saved_values)
    if base is None or structure_for(base) != saved:
        return []
    if len(revertible) == 1:
        return list(revertible)
    responsible = []
    for key in revertible:
        variant = _with_values(config, {k: v for k, v in saved_values.items() if k != key})
        if variant is None or structure_for(variant) != saved:
            responsible.append(key)
    return responsible


def _with_values(config: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict | None:
    """A copy of `config` with the dotted keys set to JSON `values`, or None if one does not take."""
    variant = copy.deepcopy(config)
    try:
        for key, value in values.items():
            *groups, name = key.split(".")
            parent = variant
            for group in groups:
                parent = parent[group]
            parent[name] = run_config.as_tuples(value)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return variant

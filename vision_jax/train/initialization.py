"""`config.init`: the weights a fresh run starts from (big_vision's rule: resume before init).

    c.init.weights = "torchvision_mobilenet_v2_imagenet"   # or a .pth / .safetensors / .npz file, or a run's workdir
    c.init.load = "backbone"                               # 'all' | 'backbone' | a module path prefix 'backbone/layer1'

A run whose workdir holds a checkpoint restores it and never reads `config.init` (the loop says
which of the two happened). Otherwise the model is initialised from `config.seed` and the part
`init.load` names is replaced by the source's values:

* a weights file (vision_jax.weights: read safely, converted from torchvision / EfficientNet-PyTorch
  names with the layout of `init.layout`, default the packaged weights' backbone or
  `config.model.backbone`). A classifier takes the file as a classifier (backbone and head, at
  the root); any other model takes the file's backbone where its own backbone sits
  (`backbone_location.find_backbone_path`: 'backbone' in R-CNN, YOLO, FCN; 'features/resnet' in
  SSD), the file's classifier being left out.
* another run's workdir: its latest checkpoint's params and batch_stats; with load='backbone' the
  source run's backbone subtree goes to this model's backbone, otherwise paths are kept.

Every variable of the model inside the loaded part must come from the source with its shape, and
every source variable inside the part must exist in the model; the differences are named
(missing, unexpected, mis-shaped) in an `InitMismatchError`, unless `init.allow_missing` (those
keep their random init) or `init.allow_unexpected` (those are dropped). A shape mismatch is
always an error (load a narrower part instead, e.g. 'backbone' rather than 'all' for a new head).
Freezing (`init.freeze_batch_stats`, `init.freeze_stages`) is in vision_jax.train.freezing.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import ml_collections
import numpy as np
from ml_collections import config_dict

from vision_jax.models.backbone_location import COLLECTIONS, Flat, find_backbone_path, flatten, name, unflatten
from vision_jax.train.config import ConfigError

LOAD_KEYWORDS = ("all", "backbone")
MAX_NAMED = 12  # differences named per kind; the rest are counted


def add_init_defaults(c: ml_collections.ConfigDict) -> None:
    """`config.init` with every default (base_config)."""
    c.init = ml_collections.ConfigDict()
    # None: random init. A name of vision_jax.weights.PACKAGED_WEIGHTS, a weights file (.pth, .pt,
    # .bin, .safetensors, .npz) or the --workdir of another run (its latest checkpoint).
    c.init.weights = config_dict.placeholder(str)
    c.init.load = "backbone"  # 'all', 'backbone', or a module path prefix such as 'backbone/layer1'
    c.init.layout = config_dict.placeholder(str)  # a file's key layout (a BACKBONES name); None: see above
    c.init.allow_missing = False  # model variables of the part that the source lacks keep their random init
    c.init.allow_unexpected = False  # source variables of the part that the model lacks are dropped
    c.init.freeze_batch_stats = False  # the loaded part's BatchNorm statistics are never updated
    c.init.freeze_stages = 0  # backbone stages 1 (stem) .. N get zero updates (and fixed statistics)


def check_init_config(init: ml_collections.ConfigDict) -> None:
    """Refuses, before any data is loaded, an init source that does not exist and bad numbers."""
    if not 0 <= int(init.freeze_stages) <= 5:
        raise ConfigError(f"config.init.freeze_stages={init.freeze_stages} must be in [0, 5] (1 = stem, k = stem..C_k)")
    if not str(init.load):
        raise ConfigError("config.init.load is empty; use 'all', 'backbone' or a module path prefix")
    if init.weights and not os.path.isdir(init.weights):
        from vision_jax.weights import resolve_weights

        try:
            resolve_weights(init.weights)
        except FileNotFoundError as error:
            raise ConfigError(f"config.init.weights: {error}") from None
    if (init.freeze_batch_stats or init.allow_missing or init.allow_unexpected) and not init.weights:
        raise ConfigError("config.init.freeze_batch_stats / allow_missing / allow_unexpected need config.init.weights")


class InitMismatchError(ConfigError):
    """The source of `config.init.weights` does not fit the model; the message names every key."""


@dataclasses.dataclass
class Loaded:
    variables: Flat  # {(collection, *path, leaf): np.ndarray} to put into the model
    part: tuple[str, ...]  # the module path of the loaded part (() = the whole model)
    summary: str  # one paragraph for the run's log


def loaded_part(init_config: ml_collections.ConfigDict, model_config, template: Mapping[str, Any]) -> tuple[str, ...]:
    """The module path `init.load` names in a model with variables `template` (shapes suffice)."""
    load = init_config.load
    if load == "all":
        return ()
    if load == "backbone":
        path = find_backbone_path(model_config, template)
        if path is None:
            raise ConfigError(
                f"config.init.load='backbone': model {model_config.name!r} holds no {model_config.backbone!r} backbone "
                f"(its modules: {sorted(template.get('params', {}))}); load 'all' or a module path prefix"
            )
        return path
    prefix = tuple(part for part in str(load).split("/") if part)
    if not prefix or not any(path[1 : 1 + len(prefix)] == prefix for path in flatten(template)):
        raise ConfigError(
            f"config.init.load={load!r} is neither {' nor '.join(map(repr, LOAD_KEYWORDS))} nor a module path of the "
            f"model (its top modules: {sorted(template.get('params', {}))})"
        )
    return prefix


def load_init(config: ml_collections.ConfigDict, template: Mapping[str, Any]) -> Loaded:
    """What `config.init` loads into a model whose variables (or their shapes) are `template`,
    checked (module docstring); raises InitMismatchError naming the differences."""
    init = config.init
    part = loaded_part(init, config.model, template)
    if os.path.isdir(init.weights):
        source, description = _from_run(init.weights, config, template, part)
    else:
        source, description, file_unexpected = _from_file(init.weights, config, template)
        source = {**source, **{("<file>", key): None for key in file_unexpected}}
    expected = {path: tuple(leaf.shape) for path, leaf in flatten(template).items() if path[0] in COLLECTIONS}
    inside = lambda path: path[1 : 1 + len(part)] == part
    wanted = {path: shape for path, shape in expected.items() if inside(path)}
    given = {path: array for path, array in source.items() if path[0] == "<file>" or inside(path)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    mis_shaped = sorted(path for path in set(wanted) & set(given) if tuple(np.shape(given[path])) != wanted[path])
    problems = [f"{len(mis_shaped)} mis-shaped:"] + [
        f"  {name(path)}: the source has {tuple(np.shape(given[path]))}, the model {wanted[path]}" for path in mis_shaped
    ] if mis_shaped else []
    if missing and not init.allow_missing:
        problems += [f"{len(missing)} missing (the model's, not in the source; init.allow_missing=True keeps their "
                     f"random init):"] + [f"  {name(path)} {wanted[path]}" for path in missing]
    if unexpected and not init.allow_unexpected:
        problems += [f"{len(unexpected)} unexpected (the source's, not in the model; init.allow_unexpected=True "
                     f"drops them):"] + [f"  {_describe(path, given[path])}" for path in unexpected]
    if problems:
        raise InitMismatchError(
            f"config.init.weights={init.weights!r} does not fit config.init.load={init.load!r} "
            f"(module {name(part) or 'the whole model'}):\n" + "\n".join(_shorten(problems))
        )
    loaded = {
        path: np.asarray(given[path], dtype=np.dtype(template_leaf.dtype))
        for path, template_leaf in flatten(template).items()
        if path in given and path not in mis_shaped
    }
    parameters = sum(int(np.size(array)) for path, array in loaded.items() if path[0] == "params")
    summary = (
        f"config.init: {len(loaded)} arrays ({parameters:,} parameters) loaded into {name(part) or 'the whole model'} "
        f"from {description}"
        + (f"; {len(missing)} left at their random init" if missing else "")
        + (f"; {len(unexpected)} of the source dropped" if unexpected else "")
        + f"; {len(source) - len(given)} source arrays outside the part not loaded"
    )
    return Loaded(loaded, part, summary)


def _describe(path: tuple[str, ...], array) -> str:
    if path[0] == "<file>":
        return f"{path[1]} (file key, used by no layer of the layout)"
    return f"{name(path)} {tuple(np.shape(array))}"


def _shorten(lines: list[str]) -> list[str]:
    out, named = [], 0
    for line in lines:
        if not line.startswith("  "):
            named = 0
            out.append(line)
        elif named < MAX_NAMED:
            named += 1
            out.append(line)
        elif named == MAX_NAMED:
            named += 1
            out.append("  ...")
    return out


def _from_file(weights: str, config, template) -> tuple[Flat, str, list[str]]:
    from vision_jax.weights import PACKAGED_WEIGHTS, convert_state_dict, layout_for, load_state_dict, resolve_weights

    path = resolve_weights(weights)
    packaged = PACKAGED_WEIGHTS.get(weights)
    layout_name = config.init.layout or (packaged.backbone if packaged else config.model.backbone)
    as_classifier = config.model.name == "classifier"
    try:
        layout = layout_for(layout_name, classifier=as_classifier)
    except ValueError as error:
        raise ConfigError(f"config.init.layout / config.model.backbone: {error}") from None
    variables, report = convert_state_dict(load_state_dict(path), layout, None, strict=False)
    flat = {key: value for key, value in flatten(variables).items()}
    if not as_classifier:
        backbone = find_backbone_path(config.model, template)
        if backbone is None:
            raise ConfigError(
                f"config.init.weights={weights!r} holds a {layout_name!r} backbone, but model {config.model.name!r} has "
                f"no {config.model.backbone!r} backbone to put it in"
            )
        flat = {(path[0], *backbone, *path[1:]): value for path, value in flat.items()}
    unexpected = [entry.split(" ")[0] for entry in report.unexpected]
    return flat, f"{path} (layout {layout_name!r})", unexpected


def latest_checkpoint(workdir: str) -> tuple[int, str]:
    """(step, directory) of the newest checkpoint of a run's workdir, without opening a manager
    there (which could write into another run's directory)."""
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    steps = sorted(int(entry) for entry in os.listdir(directory) if entry.isdigit()) if os.path.isdir(directory) else []
    if not steps:
        raise ConfigError(f"config.init.weights={workdir!r} is a directory without checkpoints (no {directory}/<step>)")
    return steps[-1], os.path.join(directory, str(steps[-1]), "default")


def _from_run(workdir: str, config, template, part) -> tuple[Flat, str]:
    import orbax.checkpoint as ocp

    from vision_jax.train.run_config import load_saved_config

    step, directory = latest_checkpoint(workdir)
    restored = ocp.StandardCheckpointer().restore(directory)
    variables = {"params": restored["params"], **dict(restored.get("model_state") or {})}
    flat = {path: np.asarray(value) for path, value in flatten(variables).items() if path[0] in COLLECTIONS}
    if config.init.load == "backbone":
        source_config = load_saved_config(workdir)
        source_backbone = find_backbone_path(source_config.model, unflatten(flat))
        if source_backbone is None:
            raise ConfigError(
                f"config.init.weights={workdir!r}: its model {source_config.model.name!r} has no "
                f"{source_config.model.backbone!r} backbone to take"
            )
        n = len(source_backbone)
        flat = {(p[0], *part, *p[1 + n :]): v for p, v in flat.items() if p[1 : 1 + n] == source_backbone}
    return flat, f"the checkpoint of {workdir} at step {step}"


def apply_loaded(variables: Mapping[str, Any], loaded: Loaded) -> dict[str, Any]:
    """`variables` (params and model state) with the loaded arrays in place of their leaves."""
    flat = flatten(variables)
    flat.update({path: value for path, value in loaded.variables.items() if path in flat})
    return unflatten(flat)

"""What training must leave unchanged: frozen backbone stages and frozen BatchNorm statistics.

* Parameters of backbone stages 1..N, N = max(config.init.freeze_stages, config.model.frozen_stages)
  (stages as vision_jax.models.backbone_location.stage_of counts them: 1 = stem, k = C_k), get zero
  updates: the optimizer is `optax.multi_transform` with `optax.set_to_zero()` on them, so neither
  the gradient nor weight decay nor momentum moves them. (`model.frozen_stages` alone stops their
  gradient inside the backbone, but SGD's L2 term and AdamW's decoupled decay would still shrink
  them.)
* BatchNorm statistics (`batch_stats`) of stages 1..config.init.freeze_stages, and of the whole
  loaded part with config.init.freeze_batch_stats, keep their values: the train step puts the old
  ones back. BatchNorm still normalises with the batch's statistics in training; for
  detectron2's FrozenBatchNorm (running statistics in the forward pass too) set
  config.model.norm='frozen' (ResNet, MobileNetV2, EfficientNet-Lite0).

`train_optimizer(config, model, init_inputs)` is the one place the loop (and the resume check)
builds the optimizer, so a frozen run's optimizer state has the same structure everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import optax

from vision_jax.models.backbone_location import find_backbone_path, flatten, stage_of, unflatten
from vision_jax.train.optimizers import build_optimizer


@dataclasses.dataclass(frozen=True)
class Frozen:
    params: Any  # a tree like the params: True = zero updates; None: nothing frozen
    batch_stats: Any  # a tree like the model state: True = values kept; None: nothing frozen


def frozen_parts(config: ml_collections.ConfigDict, template: dict) -> Frozen:
    """The frozen parameters and statistics (module docstring) of a model with variables `template`."""
    from vision_jax.train.initialization import loaded_part

    init = config.init
    stages_params = max(int(init.freeze_stages), int(config.model.get("frozen_stages", 0) or 0))
    stages_stats = int(init.freeze_stages)
    flat = flatten(template)
    backbone = find_backbone_path(config.model, template) if stages_params else None
    if init.freeze_stages and backbone is None:
        raise ValueError(
            f"config.init.freeze_stages={init.freeze_stages}: model {config.model.name!r} holds no "
            f"{config.model.backbone!r} backbone whose stages could be frozen"
        )
    part = loaded_part(init, config.model, template) if init.weights and init.freeze_batch_stats else None
    width = int(config.model.get("width", 32) or 32)

    def stage(path) -> int | None:
        if backbone is None or path[1 : 1 + len(backbone)] != backbone:
            return None
        return stage_of(config.model.backbone, path[1 + len(backbone) :], width)

    def frozen(path) -> bool:
        s = stage(path)
        if path[0] == "params":
            return s is not None and s <= stages_params
        return (s is not None and s <= stages_stats) or (part is not None and path[1 : 1 + len(part)] == part)

    marks = {path: frozen(path) for path in flat}
    params = {path[1:]: value for path, value in marks.items() if path[0] == "params"}
    stats = {path: value for path, value in marks.items() if path[0] != "params"}
    return Frozen(
        params=unflatten(params) if any(params.values()) else None,
        batch_stats=unflatten(stats) if any(stats.values()) else None,
    )


def train_optimizer(
    config: ml_collections.ConfigDict, model, init_inputs: dict
) -> tuple[optax.GradientTransformation, Callable, Frozen]:
    """(optimizer, learning-rate schedule, frozen parts) of a run: build_optimizer's, with zero
    updates on frozen parameters when there are any."""
    tx, schedule = build_optimizer(config.optimizer, config.train.num_steps)
    needs_template = config.init.weights or config.init.freeze_stages or config.model.get("frozen_stages", 0)
    if not needs_template:
        return tx, schedule, Frozen(None, None)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), **init_inputs, train=False))
    frozen = frozen_parts(config, dict(template))
    if frozen.params is not None:
        labels = jax.tree.map(lambda is_frozen: "frozen" if is_frozen else "train", frozen.params)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule, frozen


def keep_frozen_stats(frozen_stats, new_state: dict, old_state: dict) -> dict:
    """The model state after a step, with the frozen statistics put back (trees of equal structure)."""
    if frozen_stats is None:
        return new_state
    return jax.tree.map(lambda is_frozen, new, old: old if is_frozen else new, frozen_stats, dict(new_state), dict(old_state))

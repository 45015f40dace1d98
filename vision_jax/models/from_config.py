"""Backbones built from `config.model`, so every task and family reads the same keys.

Shared model keys (base_config): `backbone` (a key of `vision_jax.models.backbones.BACKBONES`),
`width`, `stem`, `norm` ('batch' | 'frozen', ResNet), `frozen_stages` (ResNet, detectron2's
FREEZE_AT), `dtype` ('float32' | 'bfloat16' | 'float16': compute dtype, parameters stay float32)
and `cross_replica_bn` (BatchNorm statistics over the whole `"data"` mesh axis). A backbone gets
the options it has fields for.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vision_jax.models.backbones import build_backbone

# The mesh axis of data parallelism, over which cross-replica BatchNorm averages its statistics;
# vision_jax.train.parallel builds its mesh on this name.
DATA_AXIS = "data"


def compute_dtype(model_config: ml_collections.ConfigDict):
    return jnp.dtype(model_config.get("dtype", "float32"))


def bn_axis_name(model_config: ml_collections.ConfigDict) -> str | None:
    """The axis BatchNorm reduces its statistics over: "data" with cross_replica_bn, else None
    (per-device statistics). The one place the switch is read."""
    return DATA_AXIS if model_config.get("cross_replica_bn", False) else None


def backbone_from_config(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The backbone named by `model_config.backbone`, given only the options it has."""
    options = {
        "width": model_config.get("width"),
        "stem": model_config.get("stem"),
        "norm": model_config.get("norm"),
        "frozen_stages": model_config.get("frozen_stages"),
        "dtype": compute_dtype(model_config),
        "bn_axis_name": bn_axis_name(model_config),
    }
    module = build_backbone(model_config.backbone)
    fields = {f.name for f in dataclasses.fields(module)}
    return build_backbone(
        model_config.backbone, **{k: v for k, v in options.items() if k in fields and v is not None}
    )

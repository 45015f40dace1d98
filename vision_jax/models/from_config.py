"""Backbones built from `config.model`, so every task reads the same keys.

Keys: `backbone` (a key of `vision_jax.models.backbones.BACKBONES`), `width`, `stem`,
`dtype` ('float32' | 'bfloat16' | 'float16': compute dtype, parameters stay float32) and
`cross_replica_bn` (BatchNorm statistics over the whole `"data"` mesh axis).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vision_jax.models.backbones import build_backbone


def compute_dtype(model_config: ml_collections.ConfigDict):
    return jnp.dtype(model_config.get("dtype", "float32"))


def backbone_from_config(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The backbone named by `model_config.backbone`, given only the options it has."""
    options = {
        "width": model_config.get("width"),
        "stem": model_config.get("stem"),
        "dtype": compute_dtype(model_config),
        "bn_axis_name": "data" if model_config.get("cross_replica_bn", False) else None,
    }
    module = build_backbone(model_config.backbone)
    fields = {f.name for f in dataclasses.fields(module)}
    return build_backbone(
        model_config.backbone, **{k: v for k, v in options.items() if k in fields and v is not None}
    )

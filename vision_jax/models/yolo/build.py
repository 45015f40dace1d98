"""Builders of the YOLO family from a config: `config.model.*` backbone keys + `config.model.yolo`.

Both versions need `data.fixed_size=True` (the whole image resized to image_size x image_size, as
the papers do). Backbone: any name of vision_jax.models.backbones ('darknet53', the paper's v3
trunk with width 32, or a ResNet / VGG) with the shared backbone keys.
"""

from __future__ import annotations

import ml_collections

from vision_jax.models.from_config import backbone_from_config, bn_axis_name, compute_dtype
from vision_jax.models.settings import settings_from_config
from vision_jax.models.yolo.settings import YOLOv1Settings, YOLOv3Settings
from vision_jax.models.yolo.v1 import YOLOv1
from vision_jax.models.yolo.v3 import YOLOv3

GROUP = "yolo"


def _check_fixed_size(config: ml_collections.ConfigDict) -> None:
    if not config.data.get("fixed_size", False):
        raise ValueError(
            f"config.model.name={config.model.name!r} needs config.data.fixed_size=True (images resized to a square)"
        )


def _build(module, settings_cls, config: ml_collections.ConfigDict, num_classes: int):
    _check_fixed_size(config)
    return module(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        settings=settings_from_config(settings_cls, config.model.get(GROUP), f"config.model.{GROUP}"),
        dtype=compute_dtype(config.model),
        bn_axis_name=bn_axis_name(config.model),
    )


def build_yolo_v1(config: ml_collections.ConfigDict, num_classes: int) -> YOLOv1:
    """The YOLO v1 of `config.model` (backbone keys + the `yolo` group) for `num_classes` classes."""
    return _build(YOLOv1, YOLOv1Settings, config, num_classes)


def build_yolo_v3(config: ml_collections.ConfigDict, num_classes: int) -> YOLOv3:
    """The YOLO v3 of `config.model` (backbone keys + the `yolo` group) for `num_classes` classes."""
    return _build(YOLOv3, YOLOv3Settings, config, num_classes)

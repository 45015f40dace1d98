"""Builders of the R-CNN family from a config: `config.model.*` backbone keys + `config.model.rcnn`."""

from __future__ import annotations

import ml_collections

from vision_jax.models.backbones import feature_strides
from vision_jax.models.backbones.resnet import ResNet
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.rcnn.fast_rcnn import FastRCNN
from vision_jax.models.rcnn.faster_rcnn import FasterRCNN, FasterRCNNC4, TwoStageDetector
from vision_jax.models.rcnn.mask_rcnn import MaskRCNN, MaskRCNNC4
from vision_jax.models.rcnn.settings import FastRCNNSettings, RCNNSettings
from vision_jax.models.rcnn.sliding_window import GROUP as SLIDING_WINDOW_GROUP
from vision_jax.models.rcnn.sliding_window import SlidingWindowDetector, SlidingWindowSettings
from vision_jax.models.settings import SettingsError, settings_from_config

GROUP = "rcnn"
FAST_RCNN_GROUP = "fast_rcnn"


def rcnn_settings(config: ml_collections.ConfigDict, model: type[TwoStageDetector]) -> RCNNSettings:
    """config.model.rcnn as RCNNSettings, refusing (by full key) a value `model` cannot use."""
    where = f"config.model.{GROUP}"
    settings = settings_from_config(RCNNSettings, config.model.get(GROUP), where)
    try:
        model.check_settings(settings)
    except SettingsError as error:
        raise ValueError(f"{where}.{error}") from None
    return settings


def _resnet(config: ml_collections.ConfigDict) -> ResNet:
    backbone = backbone_from_config(config.model)
    if not isinstance(backbone, ResNet):
        raise ValueError(f"config.model.backbone={config.model.backbone!r}: the R-CNN detectors need a ResNet")  # noqa: TRY004 (a config value)
    return backbone


def build_faster_rcnn(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNN:
    """Faster R-CNN R-FPN ('faster_rcnn') for num_classes classes."""
    return FasterRCNN(
        backbone=_resnet(config),
        num_classes=num_classes,
        settings=rcnn_settings(config, FasterRCNN),
        dtype=compute_dtype(config.model),
    )


def build_mask_rcnn(config: ml_collections.ConfigDict, num_classes: int) -> MaskRCNN:
    """Mask R-CNN R-FPN ('mask_rcnn') for num_classes classes; trains on data.with_masks batches."""
    return MaskRCNN(
        backbone=_resnet(config),
        num_classes=num_classes,
        settings=rcnn_settings(config, MaskRCNN),
        dtype=compute_dtype(config.model),
    )


def build_faster_rcnn_c4(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNNC4:
    """Faster R-CNN C4 ('faster_rcnn_c4'): the ResNet's first three stages are the trunk, its fourth
    (res5) the box head."""
    return _build_c4(config, num_classes, FasterRCNNC4)


def build_mask_rcnn_c4(config: ml_collections.ConfigDict, num_classes: int) -> MaskRCNNC4:
    """Mask R-CNN C4 ('mask_rcnn_c4'): Faster R-CNN C4 whose res5 output also feeds the mask head;
    trains on data.with_masks batches."""
    return _build_c4(config, num_classes, MaskRCNNC4)


def _build_c4(config: ml_collections.ConfigDict, num_classes: int, model: type[FasterRCNNC4]) -> FasterRCNNC4:
    settings = rcnn_settings(config, model)
    resnet = _resnet(config)
    if len(resnet.stage_sizes) != 4:
        raise ValueError(f"config.model.backbone={config.model.backbone!r} must have 4 stages for the C4 split")
    return model(
        backbone=resnet.clone(stage_sizes=tuple(resnet.stage_sizes[:3])),
        num_classes=num_classes,
        settings=settings,
        dtype=compute_dtype(config.model),
        res5_block=resnet.block,
        res5_blocks=resnet.stage_sizes[3],
        res5_width=resnet.width * 8,
        res5_norm=resnet.norm,
        res5_bn_axis_name=resnet.bn_axis_name,
    )


def build_sliding_window(config: ml_collections.ConfigDict, num_classes: int) -> SlidingWindowDetector:
    """The sliding-window detector ('sliding_window', config.model.sliding_window) on any backbone."""
    where = f"config.model.{SLIDING_WINDOW_GROUP}"
    settings = settings_from_config(SlidingWindowSettings, config.model.get(SLIDING_WINDOW_GROUP), where)
    strides = feature_strides(config.model.backbone, config.model.get("stem") or "imagenet")
    if settings.feature not in strides:
        raise ValueError(f"{where}.feature={settings.feature!r} is not an output of backbone "
                         f"{config.model.backbone!r}; it gives {sorted(strides)}")  # fmt: skip
    return SlidingWindowDetector(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        feature_stride=strides[settings.feature],
        settings=settings,
        dtype=compute_dtype(config.model),
    )


def build_fast_rcnn(config: ml_collections.ConfigDict, num_classes: int) -> FastRCNN:
    """Fast R-CNN ('fast_rcnn', config.model.fast_rcnn) on any backbone that gives the feature map
    settings.feature_map; a ResNet is cut after that stage (C4: no res5). Needs config.data.proposals."""
    where = f"config.model.{FAST_RCNN_GROUP}"
    settings = settings_from_config(FastRCNNSettings, config.model.get(FAST_RCNN_GROUP), where)
    if not config.data.get("proposals"):
        raise ValueError("model 'fast_rcnn' pools given proposals: set config.data.proposals to 'selective_search' "
                         "or a proposals file (vision_jax/data/proposals.py)")
    strides = feature_strides(config.model.backbone, config.model.get("stem") or "imagenet")
    if settings.feature_map not in strides:
        raise ValueError(f"{where}.feature_map={settings.feature_map!r} is not an output of backbone "
                         f"{config.model.backbone!r}; it gives {sorted(strides)}")  # fmt: skip
    backbone = backbone_from_config(config.model)
    if isinstance(backbone, ResNet) and settings.feature_map.startswith("C"):
        backbone = backbone.clone(stage_sizes=tuple(backbone.stage_sizes[: int(settings.feature_map[1:]) - 1]))
    return FastRCNN(
        backbone=backbone,
        num_classes=num_classes,
        settings=settings,
        feature_stride=strides[settings.feature_map],
        dtype=compute_dtype(config.model),
    )

"""Builders of the R-CNN family from a config: `config.model.*` backbone keys + `config.model.rcnn`."""

from __future__ import annotations


import ml_collections

from vision_jax.models.backbones.resnet import ResNet
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.rcnn.faster_rcnn import FasterRCNN, FasterRCNNC4, RoISettings, RPNSettings
from vision_jax.models.rcnn.settings import RCNNSettings
from vision_jax.models.settings import settings_from_config

GROUP = "rcnn"


def rcnn_settings(config: ml_collections.ConfigDict) -> RCNNSettings:
    return settings_from_config(RCNNSettings, config.model.get(GROUP), f"config.model.{GROUP}")


def _legacy(s: RCNNSettings) -> tuple[RPNSettings, RoISettings]:  # TODO(reshape): modules take RCNNSettings
    rpn = RPNSettings(
        anchor_sizes=s.anchor_sizes,
        aspect_ratios=s.anchor_aspect_ratios,
        fg_iou_threshold=s.rpn_fg_iou_threshold,
        bg_iou_threshold=s.rpn_bg_iou_threshold,
        num_samples=s.rpn_num_samples,
        positive_fraction=s.rpn_positive_fraction,
        pre_nms_topk_train=s.rpn_pre_nms_topk_train,
        pre_nms_topk_test=s.rpn_pre_nms_topk_test,
        post_nms_topk_train=s.rpn_post_nms_topk_train,
        post_nms_topk_test=s.rpn_post_nms_topk_test,
        nms_threshold=s.rpn_nms_threshold,
        min_size=s.rpn_min_size,
        smooth_l1_beta=s.rpn_smooth_l1_beta,
    )
    roi = RoISettings(
        pooler_resolution=s.roi_pooler_resolution,
        sampling_ratio=s.roi_sampling_ratio,
        pooler_type=s.roi_pooler_type,
        canonical_size=s.roi_canonical_size,
        num_samples=s.roi_num_samples,
        positive_fraction=s.roi_positive_fraction,
        iou_threshold=s.roi_iou_threshold,
        append_gt=s.roi_append_gt,
        smooth_l1_beta=s.roi_smooth_l1_beta,
        score_threshold=s.test_score_threshold,
        nms_threshold=s.test_nms_threshold,
        max_detections=s.test_max_detections,
    )
    return rpn, roi


def _resnet(config: ml_collections.ConfigDict) -> ResNet:
    backbone = backbone_from_config(config.model)
    if not isinstance(backbone, ResNet):
        raise ValueError(f"config.model.backbone={config.model.backbone!r}: the R-CNN detectors need a ResNet")  # noqa: TRY004 (a config value)
    return backbone


def build_faster_rcnn(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNN:
    s = rcnn_settings(config)
    if len(s.anchor_sizes) != 5:
        raise ValueError(f"config.model.rcnn.anchor_sizes needs 5 levels (P2..P6) for faster_rcnn, got {s.anchor_sizes}")
    if s.roi_pooler_type != "align":
        raise ValueError(f"config.model.rcnn.roi_pooler_type={s.roi_pooler_type!r}: faster_rcnn (FPN) pools with 'align'")
    rpn, roi = _legacy(s)
    return FasterRCNN(
        backbone=_resnet(config),
        num_classes=num_classes,
        rpn=rpn,
        roi=roi,
        dtype=compute_dtype(config.model),
        fpn_channels=s.fpn_channels,
        fc_dim=s.box_head_fc_dim,
        num_fc=s.box_head_num_fc,
    )


def build_faster_rcnn_c4(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNNC4:
    s = rcnn_settings(config)
    if len(s.anchor_sizes) != 1:
        raise ValueError(f"config.model.rcnn.anchor_sizes needs 1 level (C4) for faster_rcnn_c4, got {s.anchor_sizes}")
    resnet = _resnet(config)
    if len(resnet.stage_sizes) != 4:
        raise ValueError(f"config.model.backbone={config.model.backbone!r} must have 4 stages for the C4 split")
    rpn, roi = _legacy(s)
    return FasterRCNNC4(
        backbone=resnet.clone(stage_sizes=tuple(resnet.stage_sizes[:3])),
        num_classes=num_classes,
        rpn=rpn,
        roi=roi,
        dtype=compute_dtype(config.model),
        res5_block=resnet.block,
        res5_blocks=resnet.stage_sizes[3],
        res5_width=resnet.width * 8,
        res5_norm=resnet.norm,
    )




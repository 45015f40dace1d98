"""YOLO v1 / v3 for the detection task: the `config.model.yolo` keys and the model builders.

`config.model.name` 'yolo_v1' or 'yolo_v3' (DetectionTask.MODELS) picks the model; both need
`data.fixed_size=True` (the whole image resized to image_size x image_size, as the papers do).
Backbone: `config.model.backbone` is 'darknet53' (Darknet, width = model.width, 32 in the paper;
stage sizes from yolo.darknet_stage_sizes) or any name of vision_jax.models.backbones (ResNet,
VGG) built by backbone_from_config with model.width / stem / dtype.

Keys of `config.model.yolo` (defaults: the papers' VOC v1 at 448² and COCO v3 at 416²):
- grid_size (S, v1), boxes_per_cell (B, v1), feature (the backbone output the v1 head reads, 'C5'
  (stride 32, the paper's 14x14 at 448²) or 'C4' for small inputs), head_channels / fc_dim /
  dropout (v1 head), lambda_coord, lambda_noobj, rescore (v1 loss: confidence target IoU if rescore, else 1),
  linear_outputs (v1: the paper's linear output layer instead of sigmoid / softmax).
- priors: (width, height) pairs in pixels AT data.image_size (v3; COCO's k-means priors at 416²),
  masks: prior indices per level, coarsest (stride 32) first; neck_channels (v3 neck width);
  darknet_stage_sizes (residual blocks per Darknet stage); ignore_threshold; prior_iou_threshold
  (None: the paper's single best prior per object; a number: also every prior above that shape IoU,
  AlexeyAB darknet's iou_thresh); box_weight, objectness_weight, class_weight (v3 loss terms).
- score_threshold, nms_threshold, max_detections, pre_nms_topk: decoding (both versions).
"""

from __future__ import annotations

import ml_collections

from vision_jax.models.backbones.darknet import DARKNET53_STAGE_SIZES, Darknet
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.yolo_v1 import YOLOv1
from vision_jax.models.yolo_v3 import YOLOv3
from vision_jax.ops.anchors import YOLOV3_COCO_ANCHORS, YOLOV3_MASKS


def yolo_config_defaults() -> ml_collections.ConfigDict:
    """The `config.model.yolo` group (module docstring)."""
    y = ml_collections.ConfigDict()
    y.grid_size = 7
    y.boxes_per_cell = 2
    y.feature = "C5"
    y.head_channels = 1024
    y.fc_dim = 4096
    y.dropout = 0.5
    y.lambda_coord = 5.0
    y.lambda_noobj = 0.5
    y.rescore = True
    y.linear_outputs = False
    y.priors = tuple(tuple(float(v) for v in p) for p in YOLOV3_COCO_ANCHORS)
    y.masks = YOLOV3_MASKS
    y.neck_channels = 512
    y.darknet_stage_sizes = DARKNET53_STAGE_SIZES
    y.ignore_threshold = 0.5
    y.prior_iou_threshold = ml_collections.config_dict.placeholder(float)  # None: the paper's one prior
    y.box_weight = 1.0
    y.objectness_weight = 1.0
    y.class_weight = 1.0
    y.score_threshold = 0.01
    y.nms_threshold = 0.45
    y.max_detections = 100
    y.pre_nms_topk = 1000
    return y


def _backbone(config: ml_collections.ConfigDict):
    m = config.model
    if m.backbone == "darknet53":
        return Darknet(
            stage_sizes=tuple(m.yolo.darknet_stage_sizes),
            width=m.width,
            dtype=compute_dtype(m),
            bn_axis_name="data" if m.get("cross_replica_bn", False) else None,
        )
    return backbone_from_config(m)


def _check(config: ml_collections.ConfigDict, name: str) -> None:
    if not config.data.fixed_size:
        raise ValueError(f"config.model.name={name!r} needs config.data.fixed_size=True (images resized to a square)")
    y = config.model.yolo
    if y.max_detections < 1 or y.pre_nms_topk < 1:
        raise ValueError(
            f"config.model.yolo.max_detections={y.max_detections} and pre_nms_topk={y.pre_nms_topk} must be >= 1"
        )


def _decoding(y: ml_collections.ConfigDict) -> dict:
    return {
        "score_threshold": float(y.score_threshold),
        "nms_threshold": float(y.nms_threshold),
        "max_detections": int(y.max_detections),
        "pre_nms_topk": int(y.pre_nms_topk),
    }


def build_yolo_v1(config: ml_collections.ConfigDict, num_classes: int) -> YOLOv1:
    _check(config, "yolo_v1")
    y = config.model.yolo
    if y.grid_size < 1 or y.boxes_per_cell < 1:
        raise ValueError(
            f"config.model.yolo.grid_size={y.grid_size} and boxes_per_cell={y.boxes_per_cell} must be >= 1"
        )
    return YOLOv1(
        backbone=_backbone(config),
        num_classes=num_classes,
        grid_size=int(y.grid_size),
        boxes_per_cell=int(y.boxes_per_cell),
        feature=str(y.feature),
        head_channels=int(y.head_channels),
        fc_dim=int(y.fc_dim),
        dropout=float(y.dropout),
        lambda_coord=float(y.lambda_coord),
        lambda_noobj=float(y.lambda_noobj),
        rescore=bool(y.rescore),
        linear_outputs=bool(y.linear_outputs),
        dtype=compute_dtype(config.model),
        **_decoding(y),
    )


def _prior_iou_threshold(value) -> float | None:
    if value is None:
        return None
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"config.model.yolo.prior_iou_threshold={value} must be in [0, 1) or None")
    return float(value)


def build_yolo_v3(config: ml_collections.ConfigDict, num_classes: int) -> YOLOv3:
    _check(config, "yolo_v3")
    y = config.model.yolo
    priors = tuple(tuple(float(v) for v in p) for p in y.priors)
    masks = tuple(tuple(int(i) for i in mask) for mask in y.masks)
    if len(masks) != 3:
        raise ValueError(f"config.model.yolo.masks={masks} needs 3 levels (strides 32, 16, 8)")
    if any(len(p) != 2 or min(p) <= 0 for p in priors):
        raise ValueError(f"config.model.yolo.priors={priors} must be positive (width, height) pairs in pixels")
    if sorted(i for mask in masks for i in mask) != list(range(len(priors))):
        raise ValueError(f"config.model.yolo.masks={masks} must use each of the {len(priors)} priors exactly once")
    return YOLOv3(
        backbone=_backbone(config),
        num_classes=num_classes,
        priors=priors,
        masks=masks,
        neck_channels=int(y.neck_channels),
        ignore_threshold=float(y.ignore_threshold),
        prior_iou_threshold=_prior_iou_threshold(y.prior_iou_threshold),
        box_weight=float(y.box_weight),
        objectness_weight=float(y.objectness_weight),
        class_weight=float(y.class_weight),
        dtype=compute_dtype(config.model),
        **_decoding(y),
    )

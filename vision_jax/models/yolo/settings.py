"""The YOLO family's hyper-parameters: `config.model.yolo.*` is generated from `YOLOv1Settings`
(model 'yolo_v1') or `YOLOv3Settings` ('yolo_v3'); the decoding fields are shared.

Defaults: the papers' VOC v1 at 448² and COCO v3 at 416².
"""

from __future__ import annotations

import dataclasses

from vision_jax.models.settings import require
from vision_jax.models.yolo.heads import YOLOV1_OUTPUT_LAYERS
from vision_jax.ops.anchors import YOLOV3_COCO_ANCHORS, YOLOV3_MASKS


@dataclasses.dataclass(frozen=True)
class YOLODecodingSettings:
    """Decoding of both versions: score threshold, class-aware NMS, the best pre_nms_topk
    (box, class) pairs before NMS and max_detections after it."""

    score_threshold: float = 0.01
    nms_threshold: float = 0.45
    max_detections: int = 100
    pre_nms_topk: int = 1000

    def postprocess_kwargs(self) -> dict:
        """These fields as the keyword arguments of vision_jax.ops.multiclass_detections."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(YOLODecodingSettings)}

    def check(self) -> None:
        require(0.0 <= self.nms_threshold <= 1.0, "nms_threshold", self.nms_threshold, "must be in [0, 1]")
        require(0.0 <= self.score_threshold <= 1.0, "score_threshold", self.score_threshold, "must be in [0, 1]")
        require(self.max_detections >= 1, "max_detections", self.max_detections, "must be >= 1")
        require(self.pre_nms_topk >= 1, "pre_nms_topk", self.pre_nms_topk, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class YOLOv1Settings(YOLODecodingSettings):
    """YOLO v1: an S x S grid, B boxes per cell, the paper's sum-squared loss."""

    grid_size: int = 7  # S
    boxes_per_cell: int = 2  # B
    feature: str = "C5"  # the backbone output the head reads ('C4' for small inputs)
    head_channels: int = 1024
    fc_dim: int = 4096
    dropout: float = 0.5
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    rescore: bool = True  # confidence target = IoU with the object (else 1)
    linear_outputs: bool = False  # the paper's linear output layer instead of sigmoid / softmax
    # 'fully_connected': the paper's flatten + FC (fc_dim, dropout) + FC; 'convolutional': a 1x1 conv
    # shared by every cell on the S x S map (heads.YOLOv1Head; fc_dim and dropout unused).
    output_layer: str = "fully_connected"

    def check(self) -> None:
        super().check()
        require(self.grid_size >= 1, "grid_size", self.grid_size, "must be >= 1")
        require(self.boxes_per_cell >= 1, "boxes_per_cell", self.boxes_per_cell, "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        require(self.output_layer in YOLOV1_OUTPUT_LAYERS, "output_layer", self.output_layer,
                f"must be one of {YOLOV1_OUTPUT_LAYERS}")  # fmt: skip
        for name in ("head_channels", "fc_dim"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        for name in ("lambda_coord", "lambda_noobj"):
            require(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")


@dataclasses.dataclass(frozen=True)
class YOLOv3Settings(YOLODecodingSettings):
    """YOLO v3: three scales, priors split over them by masks, BCE objectness and classes."""

    # (width, height) pairs in pixels AT data.image_size; masks: prior indices per level,
    # coarsest (stride 32) first.
    priors: tuple[tuple[float, float], ...] = tuple((float(w), float(h)) for w, h in YOLOV3_COCO_ANCHORS)
    masks: tuple[tuple[int, ...], ...] = YOLOV3_MASKS
    neck_channels: int = 512  # 1x1 width of the coarsest level, halved per finer level
    ignore_threshold: float = 0.5  # no objectness loss where a prediction overlaps an object this much
    # None: the paper's single best prior per object; a number: also every prior above that shape
    # IoU (AlexeyAB darknet's iou_thresh).
    prior_iou_threshold: float | None = None
    box_weight: float = 1.0
    objectness_weight: float = 1.0
    class_weight: float = 1.0

    def check(self) -> None:
        super().check()
        require(len(self.masks) == 3, "masks", self.masks, "needs 3 levels (strides 32, 16, 8)")
        require(self.neck_channels >= 4, "neck_channels", self.neck_channels, "must be >= 4 (halved twice)")
        require(0.0 <= self.ignore_threshold <= 1.0, "ignore_threshold", self.ignore_threshold, "must be in [0, 1]")
        for name in ("box_weight", "objectness_weight", "class_weight"):
            require(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        require(all(min(p) > 0 for p in self.priors), "priors", self.priors,
                "must be positive (width, height) pairs in pixels")  # fmt: skip
        require(sorted(i for mask in self.masks for i in mask) == list(range(len(self.priors))), "masks", self.masks,
                f"must use each of the {len(self.priors)} priors exactly once")  # fmt: skip
        if self.prior_iou_threshold is not None:
            require(0.0 <= self.prior_iou_threshold < 1.0, "prior_iou_threshold", self.prior_iou_threshold,
                    "must be in [0, 1) or None")  # fmt: skip

"""YOLO v1 (Redmon et al., 2016, "You Only Look Once"): one S x S grid, B boxes and C class
probabilities per cell, trained with the sum-squared loss of `vision_jax.ops.yolo_targets`.

    images [B, H, W, 3] -> backbone (any of vision_jax.models.backbones, or Darknet) -> its
    `feature` map (default 'C5', stride 32) -> YOLOv1Head (4 convs, one with stride 2, FC, dropout,
    FC) -> per cell: B x (x, y, sqrt_w, sqrt_h, confidence) and C class probabilities.

The paper's 24-conv backbone pretrained on ImageNet at 224² is replaced by a configurable one (a
ResNet in the configs); its head (the last four convs and two FC layers) is kept, with BatchNorm
(see heads/yolo_head.py). The paper's output layer is linear (darknet's yolov1.cfg: `activation=
linear`, `softmax=0`) and so is ours with `linear_outputs=True`; by default x, y, sqrt_w, sqrt_h and
the confidence go through a sigmoid and the class scores through a softmax, so every value lives in
the range the loss compares it with (P(class | object) sums to 1 as the paper defines it). Linear
outputs are clipped to [0, 1] for decoding only (the loss sees them as they are).

Inputs/outputs follow the detection task's contract (see vision_jax/models/faster_rcnn.py):
train -> {'loss', 'losses': {coord, object, no_object, class}, 'metrics'}, every term summed over
an image and averaged over the batch, as the paper's loss; test -> {'boxes' [B, K, 4], 'scores',
'classes', 'valid'} with class-specific scores confidence x P(class) (`yolo_detections`).
Dropout draws from the 'sampling' RNG stream: apply(..., rngs={'sampling': key}).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.detector import check_train_inputs, image_sizes_or_canvas
from vision_jax.models.yolo.heads import YOLOv1Head
from vision_jax.ops.yolo_decode import yolo_detections
from vision_jax.ops.yolo_targets import yolo_v1_boxes_to_xyxy, yolo_v1_loss, yolo_v1_targets


class YOLOv1(nn.Module):
    """YOLO v1 detector.

    Attributes:
      backbone: module mapping images to a dict of feature maps; `feature` picks the head's input.
      num_classes: C. grid_size: S. boxes_per_cell: B.
      head_channels, fc_dim, dropout: the head's widths and dropout rate (paper: 1024, 4096, 0.5).
      lambda_coord, lambda_noobj, rescore: loss settings (vision_jax.ops.yolo_targets).
      linear_outputs: the paper's linear output layer instead of sigmoid / softmax (module docstring).
      score_threshold, nms_threshold, max_detections, pre_nms_topk: decoding (yolo_detections).
    """

    backbone: nn.Module
    num_classes: int
    grid_size: int = 7
    boxes_per_cell: int = 2
    feature: str = "C5"
    head_channels: int = 1024
    fc_dim: int = 4096
    dropout: float = 0.5
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    rescore: bool = True
    linear_outputs: bool = False
    score_threshold: float = 0.01
    nms_threshold: float = 0.45
    max_detections: int = 100
    pre_nms_topk: int = 1000
    dtype: Any = None

    def setup(self):
        self.head = YOLOv1Head(
            grid_size=self.grid_size,
            boxes_per_cell=self.boxes_per_cell,
            num_classes=self.num_classes,
            channels=self.head_channels,
            fc_dim=self.fc_dim,
            dropout=self.dropout,
            dtype=self.dtype,
        )

    def outputs(self, images: jax.Array, train: bool):
        """-> boxes [B, S, S, B', 4] (x, y, sqrt_w, sqrt_h), confidences [B, S, S, B'], class_probs
        [B, S, S, C], all float32; in [0, 1] unless `linear_outputs`."""
        features = self.backbone(images, train=train)
        if self.feature not in features:
            raise ValueError(f"YOLOv1 feature={self.feature!r} is not a backbone output: {sorted(features)}")
        raw = self.head(features[self.feature], train).astype(jnp.float32)
        num_boxes = self.boxes_per_cell
        boxes = raw[..., : 4 * num_boxes].reshape(*raw.shape[:3], num_boxes, 4)
        confidences = raw[..., 4 * num_boxes : 5 * num_boxes]
        class_probs = raw[..., 5 * num_boxes :]
        if self.linear_outputs:
            return boxes, confidences, class_probs
        return jax.nn.sigmoid(boxes), jax.nn.sigmoid(confidences), jax.nn.softmax(class_probs, axis=-1)

    def __call__(
        self,
        images: jax.Array,
        image_sizes: jax.Array | None = None,
        *,
        train: bool = False,
        gt_boxes: jax.Array | None = None,
        gt_classes: jax.Array | None = None,
        gt_valid: jax.Array | None = None,
        gt_is_crowd: jax.Array | None = None,
    ) -> dict:
        if images.ndim != 4:
            raise ValueError(f"YOLOv1 expects images [B, H, W, 3], got shape {images.shape}")
        image_sizes = image_sizes_or_canvas(images, image_sizes)
        canvas = images.shape[1:3]
        boxes, confidences, class_probs = self.outputs(images, train)
        if self.is_initializing() and not train:
            return {"boxes": boxes, "confidences": confidences, "class_probs": class_probs}
        if not train:
            return self.detect(boxes, confidences, class_probs, image_sizes, canvas)
        gt_is_crowd = check_train_inputs(gt_boxes, gt_classes, gt_valid, gt_is_crowd)

        def per_image(boxes, confidences, class_probs, gt_boxes, gt_classes, gt_valid, gt_is_crowd):
            targets = yolo_v1_targets(boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd, canvas, self.num_classes)
            losses = yolo_v1_loss(
                boxes, confidences, class_probs, targets, self.lambda_coord, self.lambda_noobj, self.rescore
            )
            stats = {
                "num_object_cells": jnp.sum(targets["object_cells"]).astype(jnp.float32),
                "responsible_iou_sum": jnp.sum(targets["iou"]),
            }
            return losses, stats

        losses, stats = jax.vmap(per_image)(
            boxes, confidences, class_probs, gt_boxes, gt_classes, gt_valid, gt_is_crowd
        )
        losses = {name: jnp.mean(value) for name, value in losses.items()}
        num_cells = jnp.sum(stats["num_object_cells"])
        metrics = {
            "object_cells_per_image": jnp.mean(stats["num_object_cells"]),
            "responsible_mean_iou": jnp.sum(stats["responsible_iou_sum"]) / jnp.maximum(num_cells, 1.0),
        }
        return {"loss": sum(losses.values()), "losses": losses, "metrics": metrics}

    def detect(self, boxes, confidences, class_probs, image_sizes, canvas) -> dict[str, jax.Array]:
        if self.linear_outputs:  # the sigmoid / softmax outputs are in [0, 1] already
            boxes, confidences, class_probs = (jnp.clip(v, 0.0, 1.0) for v in (boxes, confidences, class_probs))

        def per_image(boxes, confidences, class_probs, image_size):
            xyxy = yolo_v1_boxes_to_xyxy(boxes, canvas).reshape(-1, 4)  # [S*S*B', 4], cell-major
            scores = (confidences[..., None] * class_probs[:, :, None, :]).reshape(xyxy.shape[0], -1)
            return yolo_detections(
                xyxy,
                scores,
                image_size,
                score_threshold=self.score_threshold,
                nms_threshold=self.nms_threshold,
                max_detections=self.max_detections,
                pre_nms_topk=self.pre_nms_topk,
            )

        boxes, scores, classes, valid = jax.vmap(per_image)(boxes, confidences, class_probs, image_sizes)
        return {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}

"""YOLO v1 (Redmon et al., 2016, "You Only Look Once"): one S x S grid, B boxes and C class
probabilities per cell, trained with the sum-squared loss of `vision_jax.ops.yolo_targets`.

    images [B, H, W, 3] -> backbone (any of vision_jax.models.backbones) -> its `feature` map
    (default 'C5', stride 32) -> YOLOv1Head (4 convs, one with stride 2, FC, dropout, FC; or,
    with output_layer='convolutional', 4 convs to the S x S map and a 1x1 conv shared by the cells)
    -> per cell: B x (x, y, sqrt_w, sqrt_h, confidence) and C class probabilities.

The paper's 24-conv backbone pretrained on ImageNet at 224² is replaced by a configurable one (a
ResNet in the configs); its head (the last four convs and two FC layers) is kept, with BatchNorm
(see heads.py). The paper's output layer is linear (darknet's yolov1.cfg: `activation=linear`,
`softmax=0`) and so is ours with `linear_outputs=True`; by default x, y, sqrt_w, sqrt_h and the
confidence go through a sigmoid and the class scores through a softmax, so every value lives in
the range the loss compares it with (P(class | object) sums to 1 as the paper defines it). Linear
outputs are clipped to [0, 1] for decoding only (the loss sees them as they are).

The paper's FC output gives each cell its own class weights, learned only from the objects whose
centres fall in that cell; trained from scratch on the shapes scenes they never left the uniform
value (issue 13: class accuracy at chance on held-out scenes, AP50 0.008), so
configs/detection/shapes_yolov1.py uses the convolutional output, whose weights every cell shares.

The detector contract (inputs, outputs, targets) is vision_jax/models/detector.py. Here:
losses {coord, object, no_object, class}, every term summed over an image and averaged over the
batch, as the paper's loss; metrics object_cells_per_image, responsible_mean_iou. Detections score
each of the S*S*B boxes for each class with confidence x P(class | object) of its cell, through
`vision_jax.ops.multiclass_detections` (pre_nms_topk mode). Dropout draws from the 'sampling' RNG
stream: apply(..., rngs={'sampling': key}).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import vision_jax.ops as vops
from vision_jax.models.classifier import select_feature
from vision_jax.models.detector import Detector
from vision_jax.models.yolo.heads import YOLOv1Head
from vision_jax.models.yolo.settings import YOLOv1Settings


class YOLOv1(Detector):
    """YOLO v1 detector (module docstring).

    Attributes:
      backbone: module mapping (images, train=) to a dict of feature maps; `settings.feature`
        picks the head's input.
      num_classes: C.
      settings: every hyper-parameter (grid, head, loss, decoding); vision_jax.models.yolo.settings.
      dtype: compute dtype of the head; outputs are float32.
      bn_axis_name: the head's BatchNorm cross-replica axis (vision_jax.models.from_config.bn_axis_name;
        None: per-device statistics).
    """

    backbone: nn.Module
    num_classes: int
    settings: YOLOv1Settings = YOLOv1Settings()
    dtype: Any = None
    bn_axis_name: str | None = None

    def setup(self):
        s = self.settings
        s.check()
        self.head = YOLOv1Head(
            grid_size=s.grid_size,
            boxes_per_cell=s.boxes_per_cell,
            num_classes=self.num_classes,
            channels=s.head_channels,
            fc_dim=s.fc_dim,
            dropout=s.dropout,
            output_layer=s.output_layer,
            dtype=self.dtype,
            bn_axis_name=self.bn_axis_name,
        )

    def forward(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        """-> {'boxes' [B, S, S, B', 4] (x, y, sqrt_w, sqrt_h), 'confidences' [B, S, S, B'],
        'class_probs' [B, S, S, C]}, float32; in [0, 1] unless `linear_outputs`."""
        s = self.settings
        feature = select_feature(self.backbone(images, train=train), s.feature, "config.model.yolo.feature")
        raw = self.head(feature, train).astype(jnp.float32)
        num_boxes = s.boxes_per_cell
        boxes = raw[..., : 4 * num_boxes].reshape(*raw.shape[:3], num_boxes, 4)
        confidences = raw[..., 4 * num_boxes : 5 * num_boxes]
        class_probs = raw[..., 5 * num_boxes :]
        if not s.linear_outputs:
            boxes, confidences = jax.nn.sigmoid(boxes), jax.nn.sigmoid(confidences)
            class_probs = jax.nn.softmax(class_probs, axis=-1)
        return {"boxes": boxes, "confidences": confidences, "class_probs": class_probs}

    def losses(self, outputs: dict, images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        """The paper's loss against the cells holding the objects' centres on the whole canvas."""
        s = self.settings
        canvas = images.shape[1:3]

        def per_image(boxes, confidences, class_probs, gt_boxes, gt_classes, gt_valid, gt_is_crowd):
            assigned = vops.yolo_v1_targets(
                boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd, canvas, self.num_classes
            )
            losses = vops.yolo_v1_loss(
                boxes, confidences, class_probs, assigned, s.lambda_coord, s.lambda_noobj, s.rescore
            )
            stats = {
                "num_object_cells": jnp.sum(assigned["object_cells"]).astype(jnp.float32),
                "responsible_iou_sum": jnp.sum(assigned["iou"]),
            }
            return losses, stats

        losses, stats = jax.vmap(per_image)(
            outputs["boxes"], outputs["confidences"], outputs["class_probs"],
            targets["boxes"], targets["classes"], targets["valid"], targets["is_crowd"],
        )  # fmt: skip
        num_cells = jnp.sum(stats["num_object_cells"])
        metrics = {
            "object_cells_per_image": jnp.mean(stats["num_object_cells"]),
            "responsible_mean_iou": jnp.sum(stats["responsible_iou_sum"]) / jnp.maximum(num_cells, 1.0),
        }
        return {"losses": {name: jnp.mean(value) for name, value in losses.items()}, "metrics": metrics}

    def detect(self, outputs: dict, images: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        s = self.settings
        canvas = images.shape[1:3]
        boxes, confidences, class_probs = outputs["boxes"], outputs["confidences"], outputs["class_probs"]
        if s.linear_outputs:  # the sigmoid / softmax outputs are in [0, 1] already
            boxes, confidences, class_probs = (jnp.clip(v, 0.0, 1.0) for v in (boxes, confidences, class_probs))

        def per_image(boxes, confidences, class_probs, image_size):
            xyxy = vops.yolo_v1_boxes_to_xyxy(boxes, canvas).reshape(-1, 4)  # [S*S*B', 4], cell-major
            scores = (confidences[..., None] * class_probs[:, :, None, :]).reshape(xyxy.shape[0], -1)
            return vops.multiclass_detections(xyxy, scores, image_size, **s.postprocess_kwargs())

        return jax.vmap(per_image)(boxes, confidences, class_probs, image_sizes)

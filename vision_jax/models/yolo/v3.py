"""YOLO v3 (Redmon & Farhadi, 2018): three scales, three anchor priors each, objectness and class
BCE, ignore threshold; targets and losses in `vision_jax.ops.yolo_targets`.

    images [B, H, W, 3] -> backbone (Darknet-53, or a ResNet) -> C5, C4, C3 (strides 32, 16, 8)
    -> YOLOv3Head (FPN-like: 1x1, 2x nearest upsampling, concatenation; heads/yolo_head.py)
    -> per level l, per cell, per prior: (t_x, t_y, t_w, t_h, t_o, t_c1..t_cC)

Priors are (width, height) in pixels of the network input (`priors`, K of them) split over the
levels by `masks` (coarsest level first; YOLOv3's ((6, 7, 8), (3, 4, 5), (0, 1, 2)) on COCO's
k-means priors at 416²: vision_jax.ops.anchors.YOLOV3_COCO_ANCHORS). Decoding: b_x = (sigmoid(t_x) +
c_x) * stride (c_x from `yolo_grid_offsets`), b_w = p_w exp(t_w) (p_w from `yolo_anchor_priors`).

Inputs/outputs follow the detection task's contract (see vision_jax/models/faster_rcnn.py):
train -> {'loss', 'losses': {box, objectness, class}, 'metrics'}, each term summed over an image
and averaged over the batch (darknet's normalisation); test -> {'boxes' [B, K, 4], 'scores',
'classes', 'valid'} with scores sigmoid(t_o) x sigmoid(t_c) (`yolo_detections`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.detector import check_train_inputs, image_sizes_or_canvas
from vision_jax.models.yolo.heads import YOLOv3Head
from vision_jax.ops.anchors import YOLOV3_COCO_ANCHORS, YOLOV3_MASKS, yolo_anchor_priors, yolo_grid_offsets
from vision_jax.ops.yolo_decode import yolo_detections
from vision_jax.ops.yolo_targets import yolo_v3_layout, yolo_v3_loss, yolo_v3_targets

FEATURES = ("C5", "C4", "C3")  # coarsest first, strides 32, 16, 8


class YOLOv3(nn.Module):
    """YOLO v3 detector.

    Attributes:
      backbone: module mapping images to a dict holding 'C3', 'C4', 'C5' (strides 8, 16, 32).
      num_classes: C. priors: K (width, height) pixels. masks: 3 tuples of prior indices (coarsest first).
      neck_channels: 1x1 width of the coarsest level (512 in yolov3.cfg), halved per finer level.
      ignore_threshold, prior_iou_threshold, box_weight, objectness_weight, class_weight: loss
        settings (yolo_v3_targets, yolo_v3_loss).
      score_threshold, nms_threshold, max_detections, pre_nms_topk: decoding (yolo_detections).
    """

    backbone: nn.Module
    num_classes: int
    priors: Sequence[Sequence[float]] = YOLOV3_COCO_ANCHORS
    masks: Sequence[Sequence[int]] = YOLOV3_MASKS
    neck_channels: int = 512
    ignore_threshold: float = 0.5
    prior_iou_threshold: float | None = None
    box_weight: float = 1.0
    objectness_weight: float = 1.0
    class_weight: float = 1.0
    score_threshold: float = 0.01
    nms_threshold: float = 0.45
    max_detections: int = 100
    pre_nms_topk: int = 1000
    dtype: Any = None

    def setup(self):
        if len(self.masks) != len(FEATURES):
            raise ValueError(f"YOLOv3 masks need {len(FEATURES)} levels (strides 32, 16, 8), got {self.masks}")
        self.head = YOLOv3Head(
            num_classes=self.num_classes,
            priors_per_level=tuple(len(mask) for mask in self.masks),
            channels=self.neck_channels,
            dtype=self.dtype,
        )

    def raw_outputs(self, images: jax.Array, train: bool) -> list[jax.Array]:
        """-> list of 3 float32 [B, H_l, W_l, A_l, 5 + C], coarsest first."""
        for axis, side in zip(("height", "width"), images.shape[1:3]):
            if side % 32:
                raise ValueError(f"YOLOv3 needs an input {axis} divisible by 32 (strides 8-32), got {images.shape}")
        features = self.backbone(images, train=train)
        missing = [name for name in FEATURES if name not in features]
        if missing:
            raise ValueError(f"YOLOv3 needs backbone outputs {FEATURES}; {missing} missing from {sorted(features)}")
        return [out.astype(jnp.float32) for out in self.head([features[name] for name in FEATURES], train)]

    def _flatten(self, levels: list[jax.Array], images: jax.Array):
        """-> raw [B, N, 5 + C], layout (static tables), strides."""
        shapes = [out.shape[1:3] for out in levels]
        strides = tuple(images.shape[1] // h for h, _ in shapes)
        layout = yolo_v3_layout(shapes, self.priors, self.masks)
        raw = jnp.concatenate([out.reshape(out.shape[0], -1, out.shape[-1]) for out in levels], axis=1)
        return raw, layout, strides

    def decode_levels(self, levels: list[jax.Array], images: jax.Array) -> jax.Array:
        """The decoding written per level with the shared ops (yolo_grid_offsets, yolo_anchor_priors):
        -> [B, N, 4] xyxy pixels in the flat order of `yolo_v3_decode`, which it equals."""
        strides = tuple(images.shape[1] // out.shape[1] for out in levels)
        priors = yolo_anchor_priors(self.priors, self.masks, strides, in_grid_units=True)
        decoded = []
        for out, level_priors, stride in zip(levels, priors, strides):
            offsets = yolo_grid_offsets(out.shape[1:3])[None, :, :, None, :]
            centre = (jax.nn.sigmoid(out[..., :2]) + offsets) * stride
            size = level_priors * jnp.exp(jnp.minimum(out[..., 2:4], np.log(1000.0 / 16))) * stride
            xyxy = jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)
            decoded.append(xyxy.reshape(out.shape[0], -1, 4))
        return jnp.concatenate(decoded, axis=1)

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
            raise ValueError(f"YOLOv3 expects images [B, H, W, 3], got shape {images.shape}")
        image_sizes = image_sizes_or_canvas(images, image_sizes)
        levels = self.raw_outputs(images, train)
        if self.is_initializing() and not train:
            return {"raw": levels}
        raw, layout, strides = self._flatten(levels, images)
        pred_boxes = self.decode_levels(levels, images)  # [B, N, 4], = yolo_v3_decode(raw, layout, strides)
        if not train:
            return self.detect(raw, pred_boxes, image_sizes)
        gt_is_crowd = check_train_inputs(gt_boxes, gt_classes, gt_valid, gt_is_crowd)
        canvas = images.shape[1:3]

        def per_image(raw, pred_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd):
            targets = yolo_v3_targets(
                pred_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd, layout, self.priors, strides, canvas,
                self.num_classes, self.ignore_threshold, self.prior_iou_threshold,
            )  # fmt: skip
            losses = yolo_v3_loss(raw, targets, self.box_weight, self.objectness_weight, self.class_weight)
            assigned_iou = jnp.where(targets["assigned"], targets["max_iou"], 0.0)
            stats = {
                "num_assigned": jnp.sum(targets["assigned"]).astype(jnp.float32),
                "num_ignored": jnp.sum(targets["ignored"]).astype(jnp.float32),
                "assigned_iou_sum": jnp.sum(assigned_iou),
            }
            return losses, stats

        losses, stats = jax.vmap(per_image)(raw, pred_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd)
        losses = {name: jnp.mean(value) for name, value in losses.items()}
        num_assigned = jnp.sum(stats["num_assigned"])
        metrics = {
            "assigned_per_image": jnp.mean(stats["num_assigned"]),
            "ignored_per_image": jnp.mean(stats["num_ignored"]),
            "assigned_mean_iou": jnp.sum(stats["assigned_iou_sum"]) / jnp.maximum(num_assigned, 1.0),
        }
        return {"loss": sum(losses.values()), "losses": losses, "metrics": metrics}

    def detect(self, raw: jax.Array, pred_boxes: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        scores = jax.nn.sigmoid(raw[..., 4:5]) * jax.nn.sigmoid(raw[..., 5:])

        def per_image(boxes, scores, image_size):
            return yolo_detections(
                boxes,
                scores,
                image_size,
                score_threshold=self.score_threshold,
                nms_threshold=self.nms_threshold,
                max_detections=self.max_detections,
                pre_nms_topk=self.pre_nms_topk,
            )

        boxes, scores, classes, valid = jax.vmap(per_image)(pred_boxes, scores, image_sizes)
        return {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}

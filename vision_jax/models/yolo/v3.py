"""YOLO v3 (Redmon & Farhadi, 2018): three scales, three anchor priors each, objectness and class
BCE, ignore threshold; targets, losses and box decoding in `vision_jax.ops.yolo_targets`.

    images [B, H, W, 3] (H, W multiples of 32) -> backbone (Darknet-53, or a ResNet) -> C5, C4, C3
    (strides 32, 16, 8) -> YOLOv3Head (FPN-like: 1x1, 2x nearest upsampling, concatenation; heads.py)
    -> per level l, per cell, per prior: (t_x, t_y, t_w, t_h, t_o, t_c1..t_cC)

Priors are (width, height) in pixels of the network input (`settings.priors`, K of them) split over
the levels by `settings.masks` (coarsest level first; YOLOv3's ((6, 7, 8), (3, 4, 5), (0, 1, 2)) on
COCO's k-means priors at 416²: vision_jax.ops.anchors.YOLOV3_COCO_ANCHORS). The levels are
flattened level by level, then row, column, prior (N predictions, `yolo_v3_layout`) and decoded
once by `yolo_v3_decode`: b_x = (sigmoid(t_x) + c_x) * stride, b_w = p_w exp(t_w) in pixels.

The detector contract (inputs, outputs, targets) is vision_jax/models/detector.py. Here: losses
{box, objectness, class}, each term summed over an image and averaged over the batch (darknet's
normalisation); metrics assigned_per_image, ignored_per_image, assigned_mean_iou. Detections score
each box for each class with sigmoid(t_o) x sigmoid(t_c), through
`vision_jax.ops.multiclass_detections` (pre_nms_topk mode).
"""

from __future__ import annotations

import functools

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import vision_jax.ops as vops
from vision_jax.models.detector import Detector
from vision_jax.models.yolo.heads import YOLOv3Head
from vision_jax.models.yolo.settings import YOLOv3Settings

FEATURES = ("C5", "C4", "C3")  # coarsest first, strides 32, 16, 8


class YOLOv3(Detector):
    """YOLO v3 detector (module docstring).

    Attributes:
      backbone: module mapping (images, train=) to a dict holding 'C3', 'C4', 'C5' (strides 8, 16, 32).
      num_classes: C.
      settings: every hyper-parameter (priors, neck, loss, decoding); vision_jax.models.yolo.settings.
      dtype: compute dtype of the head; outputs are float32.
      bn_axis_name: the neck's BatchNorm cross-replica axis (vision_jax.models.from_config.bn_axis_name;
        None: per-device statistics).
    """

    backbone: nn.Module
    num_classes: int
    settings: YOLOv3Settings = YOLOv3Settings()
    dtype: Any = None
    bn_axis_name: str | None = None

    def setup(self):
        s = self.settings
        s.check()  # 3 levels of masks, every prior used once
        self.head = YOLOv3Head(
            num_classes=self.num_classes,
            priors_per_level=tuple(len(mask) for mask in s.masks),
            channels=s.neck_channels,
            dtype=self.dtype,
            bn_axis_name=self.bn_axis_name,
        )

    def forward(self, images: jax.Array, train: bool) -> list[jax.Array]:
        """-> 3 float32 raw outputs [B, H_l, W_l, A_l, 5 + C], coarsest level first."""
        for axis, side in zip(("height", "width"), images.shape[1:3]):
            if side % 32:
                raise ValueError(f"YOLOv3 needs an input {axis} divisible by 32 (strides 8-32), got {images.shape}")
        features = self.backbone(images, train=train)
        missing = [name for name in FEATURES if name not in features]
        if missing:
            raise ValueError(f"YOLOv3 needs backbone outputs {FEATURES}; {missing} missing from {sorted(features)}")
        return [out.astype(jnp.float32) for out in self.head([features[name] for name in FEATURES], train)]

    def decode(self, levels: list[jax.Array], images: jax.Array):
        """Flattened outputs and their boxes: (raw [B, N, 5 + C], boxes [B, N, 4] xyxy input pixels,
        layout (`yolo_v3_layout`'s static tables), strides (3 ints, coarsest first))."""
        s = self.settings
        strides = tuple(images.shape[1] // out.shape[1] for out in levels)
        layout = vops.yolo_v3_layout([out.shape[1:3] for out in levels], s.priors, s.masks)
        raw = jnp.concatenate([out.reshape(out.shape[0], -1, out.shape[-1]) for out in levels], axis=1)
        return raw, vops.yolo_v3_decode(raw, layout, strides), layout, strides

    def losses(self, outputs: list[jax.Array], images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        """v3's assignment (best prior per object, or every prior above prior_iou_threshold) and loss."""
        s = self.settings
        raw, pred_boxes, layout, strides = self.decode(outputs, images)
        canvas = images.shape[1:3]

        def per_image(raw, pred_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd):
            assigned = vops.yolo_v3_targets(
                pred_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd, layout, s.priors, strides, canvas,
                self.num_classes, s.ignore_threshold, s.prior_iou_threshold,
            )  # fmt: skip
            losses = vops.yolo_v3_loss(raw, assigned, s.box_weight, s.objectness_weight, s.class_weight)
            stats = {
                "num_assigned": jnp.sum(assigned["assigned"]).astype(jnp.float32),
                "num_ignored": jnp.sum(assigned["ignored"]).astype(jnp.float32),
                "assigned_iou_sum": jnp.sum(jnp.where(assigned["assigned"], assigned["max_iou"], 0.0)),
            }
            return losses, stats

        losses, stats = jax.vmap(per_image)(
            raw, pred_boxes, targets["boxes"], targets["classes"], targets["valid"], targets["is_crowd"]
        )
        num_assigned = jnp.sum(stats["num_assigned"])
        metrics = {
            "assigned_per_image": jnp.mean(stats["num_assigned"]),
            "ignored_per_image": jnp.mean(stats["num_ignored"]),
            "assigned_mean_iou": jnp.sum(stats["assigned_iou_sum"]) / jnp.maximum(num_assigned, 1.0),
        }
        return {"losses": {name: jnp.mean(value) for name, value in losses.items()}, "metrics": metrics}

    def detect(self, outputs: list[jax.Array], images: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        s = self.settings
        raw, boxes, _, _ = self.decode(outputs, images)
        scores = jax.nn.sigmoid(raw[..., 4:5]) * jax.nn.sigmoid(raw[..., 5:])  # [B, N, C]
        per_image = functools.partial(vops.multiclass_detections, **s.postprocess_kwargs())
        return jax.vmap(per_image)(boxes, scores, image_sizes)

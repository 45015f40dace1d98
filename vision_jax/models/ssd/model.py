"""SSD: Single Shot MultiBox Detector (Liu et al., 2016), SSD300/SSD512 on VGG-16 and a ResNet variant.

    images [B, H, W, 3] -> sources (features.py) -> SSDHead (head.py): per default box C + 1
      logits (background last, index C) and 4 deltas
      -> train: matching, targets, 3:1 hard negative mining, MultiBox loss
         test:  softmax, per-class score threshold and top-k, class-aware NMS, top max_detections

The detector contract (train / inference / init calls, targets, detections) is
`vision_jax.models.detector`'s; `SSD` supplies its three parts:
  forward  the head's logits [B, A, C + 1] and deltas [B, A, 4] (float32) and the A default boxes
           [A, 4] (xyxy input pixels) of the sources' static shapes, constants of the compiled step
           (`vision_jax.ops.ssd_default_boxes`: per-level extra aspect ratios, scales, steps);
  losses   'loss_cls' (softmax cross-entropy over positives and mined negatives) and
           'loss_box_reg' (smooth L1 over positives), each / the batch's positives; metrics
           'num_positive_boxes' and 'num_mined_negatives' per image, 'positive_accuracy';
  detect   `vision_jax.ops.ssd_detect`, i.e. `multiclass_detections` with a per-class top-k.
Targets, loss and decoding are the ops of `vision_jax.ops.ssd_targets` (SSD's variances 0.1 /
0.2 as box weights 10, 10, 5, 5). `init` (train=False) returns {'logits', 'deltas'}.

Hyper-parameters: `SSDSettings` (settings.py, the keys of `config.model.ssd`); the backbone is
`config.model.backbone` ('vgg16' | 'vgg16_bn' | a ResNet) with the shared model keys
(vision_jax.models.from_config); build.py puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

import vision_jax.ops as vops
from vision_jax.models.detector import Detector
from vision_jax.models.ssd.head import SSDHead
from vision_jax.models.ssd.settings import SSDSettings
from vision_jax.ops.ssd_targets import SSD_BOX_WEIGHTS, ssd_detect, ssd_loss, ssd_targets


class SSD(Detector):
    """SSD detector (module docstring). `features` maps (images, train) to the L source maps."""

    features: nn.Module
    num_classes: int  # foreground classes C; background is logit C
    settings: SSDSettings = SSDSettings()
    dtype: Any = None

    def setup(self):
        self.head = SSDHead(self.num_classes, self.settings.boxes_per_location(), dtype=self.dtype)

    def default_boxes(self, feature_maps: Sequence[jax.Array], image_shape: tuple[int, int]) -> jax.Array:
        """[A, 4] xyxy input pixels for the maps' static shapes."""
        s = self.settings
        shapes = [tuple(x.shape[1:3]) for x in feature_maps]
        if len(s.aspect_ratios) != len(shapes):
            raise ValueError(
                f"model.ssd.aspect_ratios has {len(s.aspect_ratios)} levels but the network gives {len(shapes)} "
                f"sources {shapes}; give one tuple per source"
            )
        if s.scales and len(s.scales) != len(shapes) + 1:
            raise ValueError(f"model.ssd.scales needs {len(shapes) + 1} values (sources + 1), got {s.scales}")
        if s.steps and len(s.steps) != len(shapes):
            raise ValueError(f"model.ssd.steps needs {len(shapes)} values (one per source), got {s.steps}")
        return vops.ssd_default_boxes(
            shapes,
            image_shape,
            s.aspect_ratios,
            scales=s.scales or None,
            min_ratio=s.min_scale,
            max_ratio=s.max_scale,
            steps=s.steps or None,
        )

    def forward(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        feature_maps = self.features(images, train)
        logits, deltas = self.head(feature_maps)
        default_boxes = self.default_boxes(feature_maps, images.shape[1:3])
        if logits.shape[1] != default_boxes.shape[0]:
            raise ValueError(
                f"head predicts {logits.shape[1]} boxes but there are {default_boxes.shape[0]} default boxes"
            )
        return {"logits": logits, "deltas": deltas, "default_boxes": default_boxes}

    def init_outputs(self, outputs: dict[str, jax.Array], images: jax.Array) -> dict[str, jax.Array]:
        return {"logits": outputs["logits"], "deltas": outputs["deltas"]}

    def losses(
        self, outputs: dict[str, jax.Array], images: jax.Array, image_sizes: jax.Array, targets: dict
    ) -> dict:
        s = self.settings

        def image_targets(boxes, classes, valid, is_crowd):
            return ssd_targets(
                boxes,
                classes,
                valid,
                outputs["default_boxes"],
                self.num_classes,
                is_crowd,
                iou_threshold=s.iou_threshold,
                box_weights=SSD_BOX_WEIGHTS,
            )

        labels, box_targets, _ = jax.vmap(image_targets)(
            targets["boxes"], targets["classes"], targets["valid"], targets["is_crowd"]
        )
        out = ssd_loss(outputs["logits"], outputs["deltas"], labels, box_targets, s.neg_pos_ratio, s.min_negatives)
        batch = images.shape[0]
        return {
            "losses": {"loss_cls": out["loss_cls"], "loss_box_reg": out["loss_box_reg"]},
            "metrics": {
                "num_positive_boxes": out["num_positive"] / batch,
                "num_mined_negatives": out["num_negative"] / batch,
                "positive_accuracy": out["positive_accuracy"],
            },
        }

    def detect(
        self, outputs: dict[str, jax.Array], images: jax.Array, image_sizes: jax.Array
    ) -> dict[str, jax.Array]:
        s = self.settings

        def image_detections(logits, deltas, image_size):
            return ssd_detect(
                logits,
                deltas,
                outputs["default_boxes"],
                image_size,
                score_threshold=s.score_threshold,
                nms_threshold=s.nms_threshold,
                topk_candidates=s.topk_candidates,
                max_detections=s.max_detections,
                box_weights=SSD_BOX_WEIGHTS,
            )

        return jax.vmap(image_detections)(outputs["logits"], outputs["deltas"], image_sizes)

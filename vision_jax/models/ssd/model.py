"""SSD: Single Shot MultiBox Detector (Liu et al., 2016), SSD300/SSD512 on VGG-16 and a ResNet variant.

    images [B, S, S, 3] -> sources (backbones/ssd_features.py) -> SSDHead: per default box C + 1
      logits and 4 deltas -> train: matching, targets, hard negative mining, MultiBox loss
                             test:  softmax, per-class threshold / top-k / NMS, top 200

Default boxes: `vision_jax.ops.ssd_default_boxes` on the sources' static shapes, with per-level
extra aspect ratios, scales (explicit, or linear from min_scale to max_scale) and steps from
`SSDSettings`; they are constants of the compiled step. Targets, loss and decoding are the ops
of `vision_jax.ops.ssd_targets` (variances 0.1/0.2 as encode weights 10, 10, 5, 5).

The model contract is the detection task's (see faster_rcnn.py): `apply(vars, images,
image_sizes, train=True, gt_boxes=, gt_classes=, gt_valid=, gt_is_crowd=,
mutable=['batch_stats'])` -> ({'loss', 'losses', 'metrics'}, state); `apply(vars, images,
image_sizes, train=False)` -> {'boxes' [B, K, 4], 'scores', 'classes', 'valid'}, K =
max_detections, boxes in input pixels clipped to image_sizes (float [B, 2] (height, width);
None = the whole input). `init` (train=False) returns the raw head outputs instead of running
the post-processing.

Config (`config.model.ssd`, a nested group built by `ssd_config_defaults`; SSD300-VGG16 values):
  aspect_ratios   per source, the extra ratios r (boxes r:1 and 1:r besides the two squares)
  scales          L + 1 box scales as fractions of the input; () = linear from min_scale to
                  max_scale (`ssd_scales`)
  min_scale, max_scale
  steps           per source, input pixels per cell for the box centres; () = the feature grid
  extras          extra layers, (mid_channels, out_channels, kernel, stride, padding) each
  fc_channels     VGG fc6/fc7 width (1024)
  resnet_sources  ResNet stages used as the first sources (('C4', 'C5'))
  resnet_source_channels  k > 0: a 3x3 conv + BN + ReLU (k channels) on each ResNet source
                  before the head (0 = none, the plain SSD head on the stage outputs)
  extras_norm     BatchNorm in the extra layers (ResNet variant only; VGG's have none)
  l2norm, l2norm_scale   L2Norm with a learned scale (init 20) on the first source
  iou_threshold, neg_pos_ratio, min_negatives   matching and hard negative mining
  score_threshold, nms_threshold, topk_candidates, max_detections   decoding
The backbone is `config.model.backbone` ('vgg16' | 'vgg16_bn' | a ResNet) with the shared
keys width and dtype (vision_jax.models.from_config).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import vision_jax.ops as vops
from vision_jax.models.detector import check_train_inputs, image_sizes_or_canvas
from vision_jax.models.ssd.head import SSDHead
from vision_jax.models.ssd.settings import SSDSettings
from vision_jax.ops.ssd_targets import SSD_BOX_WEIGHTS, ssd_detect, ssd_loss, ssd_targets

class SSD(nn.Module):
    """SSD detector (module docstring). `features` maps (images, train) to the L source maps."""

    features: nn.Module
    num_classes: int
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
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        height, width = images.shape[1:3]
        feature_maps = self.features(images, train)
        logits, deltas = self.head(feature_maps)
        default_boxes = self.default_boxes(feature_maps, (height, width))
        if logits.shape[1] != default_boxes.shape[0]:
            raise ValueError(
                f"head predicts {logits.shape[1]} boxes but there are {default_boxes.shape[0]} default boxes"
            )
        if self.is_initializing() and not train:
            return {"logits": logits, "deltas": deltas}
        if not train:
            return self.detect(logits, deltas, default_boxes, image_sizes_or_canvas(images, image_sizes))
        gt_is_crowd = check_train_inputs(gt_boxes, gt_classes, gt_valid, gt_is_crowd)
        return self.losses(logits, deltas, default_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd)

    def losses(self, logits, deltas, default_boxes, gt_boxes, gt_classes, gt_valid, gt_is_crowd) -> dict:
        s = self.settings
        labels, box_targets, _ = jax.vmap(
            functools.partial(ssd_targets, iou_threshold=s.iou_threshold, box_weights=SSD_BOX_WEIGHTS),
            in_axes=(0, 0, 0, None, 0),
        )(
            gt_boxes.astype(jnp.float32),
            gt_classes.astype(jnp.int32),
            gt_valid.astype(bool),
            default_boxes,
            gt_is_crowd.astype(bool),
        )
        out = ssd_loss(logits, deltas, labels, box_targets, s.neg_pos_ratio, s.min_negatives)
        losses = {"loss_cls": out["loss_cls"], "loss_box_reg": out["loss_box_reg"]}
        batch = logits.shape[0]
        metrics = {
            "num_positive_boxes": out["num_positive"] / batch,
            "num_mined_negatives": out["num_negative"] / batch,
            "positive_accuracy": out["positive_accuracy"],
        }
        return {"loss": losses["loss_cls"] + losses["loss_box_reg"], "losses": losses, "metrics": metrics}

    def detect(self, logits, deltas, default_boxes, image_sizes) -> dict[str, jax.Array]:
        s = self.settings
        decode = functools.partial(
            ssd_detect,
            score_threshold=s.score_threshold,
            nms_threshold=s.nms_threshold,
            topk_candidates=s.topk_candidates,
            max_detections=s.max_detections,
            box_weights=SSD_BOX_WEIGHTS,
        )
        boxes, scores, classes, valid = jax.vmap(decode, in_axes=(0, 0, None, 0))(
            logits, deltas, default_boxes, image_sizes
        )
        return {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}

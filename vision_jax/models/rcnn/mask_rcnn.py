"""Mask R-CNN (He et al., 2017) with a ResNet-FPN backbone: Faster R-CNN (faster_rcnn.py) plus the
mask head of mask_head.py on RoIs pooled 14 x 14 (mask_pooler_resolution) from P2..P5.

    train: the Faster R-CNN losses, and 'loss_mask' (x mask_loss_weight) on the foreground RoIs of
           the box head's sample, against targets['masks'] (the pipeline's canvas-aligned masks,
           data.with_masks=True) cropped to each RoI (mask_head.mask_rcnn_targets). The sampler
           puts foreground first, so the first int(roi_num_samples x roi_positive_fraction) RoIs
           of each image hold all of them: a static count, as detectron2 pools only foreground.
           The mask head sees the sampled proposal boxes, as in detectron2.
    test:  the Faster R-CNN detections, and 'masks' float32 [B, K, M, M] (M = mask_resolution): the
           sigmoid of each detection's predicted class, on the detection's box (box-relative, not
           pasted into the image: the detection task pastes them, tasks/detection.py masks_on_canvas;
           padding rows hold whatever the head gives their zero box).

Metric: 'mask_num_fg' (foreground RoIs per image that the mask loss saw).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vision_jax.models.rcnn import mask_head
from vision_jax.models.rcnn.faster_rcnn import FasterRCNN, Features


class MaskRCNN(FasterRCNN):
    """Mask R-CNN R-FPN (module docstring); settings as FasterRCNN's plus the mask_* fields."""

    def setup(self):
        super().setup()
        s = self.settings
        self.mask_head = mask_head.MaskHead(self.num_classes, s.mask_head_conv_dim, s.mask_head_num_conv,
                                            dtype=self.dtype)  # fmt: skip

    def mask_outputs(self, features: Features, boxes: jax.Array, train: bool) -> jax.Array:
        """boxes [B, R, 4] input pixels -> mask logits float32 [B, R, M, M, C]."""
        batch, num_rois = boxes.shape[:2]
        pooled = self.pool_fpn_rois(features, boxes, self.settings.mask_pooler_resolution)
        logits = self.mask_head(pooled, train)
        return logits.reshape(batch, num_rois, *logits.shape[1:])

    def init_outputs(self, features: Features, images: jax.Array) -> dict[str, jax.Array]:
        outputs = super().init_outputs(features, images)
        dummy_rois = jnp.tile(jnp.asarray([[[0.0, 0.0, 16.0, 16.0]]]), (images.shape[0], 1, 1))
        return {**outputs, "mask_logits": self.mask_outputs(features, dummy_rois, train=False)}

    def roi_head_losses(self, features: Features, sampled: dict[str, jax.Array], targets: dict) -> dict:
        """The box head's losses (FasterRCNN), then 'loss_mask' on the foreground RoIs."""
        if "masks" not in targets:
            raise ValueError("mask_rcnn training needs targets['masks'] [B, G, Hm, Wm]: set data.with_masks=True")
        out = super().roi_head_losses(features, sampled, targets)
        s = self.settings
        gt_masks = targets["masks"]
        if gt_masks.ndim != 4 or gt_masks.shape[:2] != targets["boxes"].shape[:2]:
            raise ValueError(f"targets['masks'] must be [B, G, Hm, Wm] with [B, G]={targets['boxes'].shape[:2]}, "
                             f"got shape {gt_masks.shape}")  # fmt: skip
        most_foreground = max(1, int(s.roi_num_samples * s.roi_positive_fraction))
        first = {key: value[:, :most_foreground] for key, value in sampled.items()}
        foreground = first["valid"] & (first["classes"] < self.num_classes)
        # The input canvas the masks are aligned with: P2 has stride 4 and the side is a multiple of
        # 32 (both checked in `features`), so P2's size x 4 is the input's.
        image_size = (features[2].shape[1] * 4, features[2].shape[2] * 4)
        mask_targets = jax.vmap(
            functools.partial(mask_head.mask_rcnn_targets, image_size=image_size, mask_resolution=s.mask_resolution)
        )(gt_masks, first["gt_index"], first["boxes"])
        logits = self.mask_outputs(features, first["boxes"], train=True)
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        loss = mask_head.mask_rcnn_loss(flat(logits), flat(first["classes"]), flat(foreground), flat(mask_targets))
        batch = foreground.shape[0]
        return {
            "losses": {**out["losses"], "loss_mask": loss * s.mask_loss_weight},
            "metrics": {**out["metrics"], "mask_num_fg": jnp.sum(foreground).astype(jnp.float32) / batch},
        }

    def detect_from_proposals(self, features, proposals, proposal_valid, image_sizes):
        detections = super().detect_from_proposals(features, proposals, proposal_valid, image_sizes)
        logits = self.mask_outputs(features, detections["boxes"], train=False)
        return {**detections, "masks": mask_head.mask_rcnn_inference(logits, detections["classes"])}

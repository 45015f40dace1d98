"""Mask R-CNN (He et al., 2017): Faster R-CNN (faster_rcnn.py) plus the mask head of mask_head.py.

* `MaskRCNN` (FPN): RoIs pooled 14 x 14 (mask_pooler_resolution) from P2..P5, four 3x3 convs
  (mask_head_num_conv, None = 4), deconv, 1x1 -> 28 x 28 masks (detectron2's R50-FPN).
* `MaskRCNNC4` (the paper's C4): the mask head reads the res5 output of the box head's RoIs (the
  C4 pooler's roi_pooler_resolution, 14 -> res5 -> 7 x 7 x 2048), no 3x3 conv (mask_head_num_conv,
  None = 0), deconv + ReLU, 1x1 -> 14 x 14 masks (detectron2's R50-C4: Res5ROIHeads with
  MaskRCNNConvUpsampleHead, NUM_CONV 0). In training res5 runs once on the sampled RoIs and both
  heads read it; at inference it runs again on the final detections' boxes, as in detectron2.

    train: the Faster R-CNN losses, and 'loss_mask' (x mask_loss_weight) on the foreground RoIs of
           the box head's sample, against targets['box_masks'] (the pipeline's ground-truth masks
           cropped to their boxes, data.with_masks=True) cropped to each RoI
           (mask_head.sampled_mask_loss). The sampler puts foreground first, so the first
           int(roi_num_samples x roi_positive_fraction) RoIs of each image hold all of them: a
           static count, as detectron2 pools only foreground. The mask head sees the sampled
           proposal boxes, as in detectron2.
    test:  the Faster R-CNN detections, and 'masks' float32 [B, K, M, M]: the sigmoid of each
           detection's predicted class, on the detection's box (box-relative, not pasted into the
           image: the evaluator pastes them at the original resolution,
           vision_jax/evaluation/mask_paste.py; padding rows hold whatever the head gives their zero box).

Metric: 'mask_num_fg' (foreground RoIs per image that the mask loss saw).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vision_jax.models.rcnn import mask_head
from vision_jax.models.rcnn.faster_rcnn import FasterRCNN, FasterRCNNC4, Features

FPN_MASK_CONVS = 4  # detectron2's Base-RCNN-FPN ROI_MASK_HEAD.NUM_CONV
C4_MASK_CONVS = 0  # detectron2's default ROI_MASK_HEAD.NUM_CONV, which its C4 configs keep


def _mask_head(module, default_num_conv: int) -> mask_head.MaskHead:
    s = module.settings
    num_conv = default_num_conv if s.mask_head_num_conv is None else s.mask_head_num_conv
    return mask_head.MaskHead(module.num_classes, s.mask_head_conv_dim, num_conv, dtype=module.dtype)


class MaskRCNN(FasterRCNN):
    """Mask R-CNN R-FPN (module docstring); settings as FasterRCNN's plus the mask_* fields."""

    def setup(self):
        super().setup()
        self.mask_head = _mask_head(self, FPN_MASK_CONVS)

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
        out = super().roi_head_losses(features, sampled, targets)
        s = self.settings
        first, foreground = mask_head.foreground_first(sampled, s.roi_num_samples, s.roi_positive_fraction, self.num_classes)
        logits = self.mask_outputs(features, first["boxes"], train=True)
        loss, num_fg = mask_head.sampled_mask_loss(logits, first, foreground, targets)
        return {
            "losses": {**out["losses"], "loss_mask": loss * s.mask_loss_weight},
            "metrics": {**out["metrics"], "mask_num_fg": num_fg},
        }

    def detect_from_proposals(self, features, proposals, proposal_valid, image_sizes):
        detections = super().detect_from_proposals(features, proposals, proposal_valid, image_sizes)
        logits = self.mask_outputs(features, detections["boxes"], train=False)
        return {**detections, "masks": mask_head.mask_rcnn_inference(logits, detections["classes"])}


class MaskRCNNC4(FasterRCNNC4):
    """Mask R-CNN C4 (module docstring): FasterRCNNC4 whose res5 output also feeds the mask head."""

    def setup(self):
        super().setup()
        self.mask_head = _mask_head(self, C4_MASK_CONVS)

    def res5_outputs(self, features: Features, boxes: jax.Array, train: bool):
        """boxes [B, R, 4] -> (logits [B, R, C + 1], deltas [B, R, C, 4], res5 [B, R, h, w, D])."""
        batch, num_rois = boxes.shape[:2]
        logits, deltas, res5 = self.box_head(self.pool_rois(features, boxes), train, return_features=True)
        return (logits.reshape(batch, num_rois, -1), deltas.reshape(batch, num_rois, self.num_classes, 4),
                res5.reshape(batch, num_rois, *res5.shape[1:]))  # fmt: skip

    def mask_logits(self, res5: jax.Array) -> jax.Array:
        """res5 features [B, R, h, w, D] -> mask logits float32 [B, R, 2h, 2w, C]."""
        logits = self.mask_head(res5.reshape(-1, *res5.shape[2:]))
        return logits.reshape(*res5.shape[:2], *logits.shape[1:])

    def init_outputs(self, features: Features, images: jax.Array) -> dict[str, jax.Array]:
        dummy_rois = jnp.tile(jnp.asarray([[[0.0, 0.0, 16.0, 16.0]]]), (images.shape[0], 1, 1))
        self.rpn_outputs(features)
        logits, deltas, res5 = self.res5_outputs(features, dummy_rois, train=False)
        return {"logits": logits, "deltas": deltas, "mask_logits": self.mask_logits(res5)}

    def roi_head_losses(self, features: Features, sampled: dict[str, jax.Array], targets: dict) -> dict:
        """res5 once on the sampled RoIs: the box losses on all of them, 'loss_mask' on the foreground."""
        s = self.settings
        logits, deltas, res5 = self.res5_outputs(features, sampled["boxes"], train=True)
        out = self.box_losses(sampled, logits, deltas)
        first, foreground = mask_head.foreground_first(sampled, s.roi_num_samples, s.roi_positive_fraction, self.num_classes)
        mask_logits = self.mask_logits(res5[:, : first["boxes"].shape[1]])
        loss, num_fg = mask_head.sampled_mask_loss(mask_logits, first, foreground, targets)
        return {
            "losses": {**out["losses"], "loss_mask": loss * s.mask_loss_weight},
            "metrics": {**out["metrics"], "mask_num_fg": num_fg},
        }

    def detect_from_proposals(self, features, proposals, proposal_valid, image_sizes):
        detections = super().detect_from_proposals(features, proposals, proposal_valid, image_sizes)
        _, _, res5 = self.res5_outputs(features, detections["boxes"], train=False)
        logits = self.mask_logits(res5)
        return {**detections, "masks": mask_head.mask_rcnn_inference(logits, detections["classes"])}

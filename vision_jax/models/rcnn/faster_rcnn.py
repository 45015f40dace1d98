"""Faster R-CNN (Ren et al., 2015): ResNet-FPN (Lin et al., 2017) and the original C4 variant.

Both models share one flow (`TwoStageDetector`), every shape static so a train step compiles once:

    images [B, S, S, 3] -> backbone (+ FPN) features -> RPN logits and deltas on anchors
      train: RPN targets/sampling/losses; proposals (train sizes, no gradient) + ground truth ->
             sampled RoIs -> RoI features -> box head -> Fast R-CNN losses
      test:  proposals (test sizes) -> RoI features -> box head -> per-class decode, NMS, top-k

* `FasterRCNN` (FPN): RPN on P2..P6 (one anchor size per level x aspect ratios), multilevel RoIAlign
  of each RoI on its FPN level (assign_fpn_levels, roi_canonical_size at level 4) from P2..P5,
  box_head_num_fc FC layers (FCBoxHead).
* `FasterRCNNC4`: a 3-stage ResNet trunk (C2..C4), RPN on C4 (stride 16, all anchor sizes on one
  level), RoIAlign or RoIPool on C4, res5 as the box head (Res5BoxHead), as in the paper.

The call contract (images, image_sizes, targets, train; losses / detections / init outputs) is the
one of every detector: vision_jax/models/detector.py. Every hyper-parameter is a field of
`settings: RCNNSettings` (settings.py, config.model.rcnn.*). Per-image logic (matching, sampling,
proposal selection, post-processing) runs under `jax.vmap`; the training losses are detectron2's
(rpn.py and box_head.py). Random sampling draws from the 'sampling' RNG stream:
apply(..., rngs={'sampling': key}).

Losses: 'loss_rpn_cls', 'loss_rpn_loc', 'loss_cls', 'loss_box_reg'. Metrics (per image where a
count): 'rpn_num_pos_anchors', 'rpn_num_proposals', 'roi_num_fg_samples', 'roi_cls_accuracy',
'roi_fg_cls_accuracy'. Detections: K = test_max_detections, boxes in input pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import vision_jax.ops as vops
from vision_jax.models.backbones.fpn import FPN
from vision_jax.models.detector import Detector, stack_detections
from vision_jax.models.rcnn import box_head as roi_box_head
from vision_jax.models.rcnn import rpn
from vision_jax.models.rcnn.settings import RCNNSettings
from vision_jax.models.settings import require

Features = dict[int, jax.Array]  # {level: [B, ceil(S / 2**level), ceil(S / 2**level), C]}


class TwoStageDetector(Detector):
    """The shared flow (module docstring). Subclasses extend `setup` (self.box_head and what
    `features` needs; the RPN head is built here, the same in every variant), define `features`,
    `rpn_levels`, `pool_rois` and may extend `check_settings`; a detector with more RoI heads
    extends `roi_head_losses` and `detect_from_proposals` (MaskRCNN, mask_rcnn.py)."""

    backbone: nn.Module
    num_classes: int
    settings: RCNNSettings = RCNNSettings()
    dtype: Any = None

    def setup(self):
        s = self.settings
        self.rpn_head = rpn.RPNHead(s.anchors_per_location, s.rpn_conv_channels, dtype=self.dtype)

    # --- pieces a subclass supplies -------------------------------------------------------------
    def features(self, images: jax.Array, train: bool) -> Features:
        """{level: [B, S / 2**level, S / 2**level, C]} for the RPN and the RoI pooler."""
        raise NotImplementedError

    def rpn_levels(self) -> tuple[int, ...]:
        raise NotImplementedError

    def pool_rois(self, features: Features, boxes: jax.Array) -> jax.Array:
        """boxes [B, R, 4] input pixels -> RoI features [B * R, h, w, C] (image-major)."""
        raise NotImplementedError

    @classmethod
    def check_settings(cls, settings: RCNNSettings) -> None:
        """Raises SettingsError naming the field whose value this model cannot use."""
        settings.check()

    # --- the detector contract (models/detector.py) ---------------------------------------------
    def forward(self, images: jax.Array, train: bool) -> Features:
        """images [B, S, S, 3] -> the backbone's (and FPN's) features, after refusing settings this
        model cannot use (a module built without `build.py` is checked too)."""
        self.check_settings(self.settings)
        return self.features(images, train)

    def init_outputs(self, features: Features, images: jax.Array) -> dict[str, jax.Array]:
        """The RPN head, and the box head on one dummy RoI per image: every parameter exists once
        both have run; proposal selection and post-processing have none, and skipping them makes
        `init` compile several times faster."""
        dummy_rois = jnp.tile(jnp.asarray([[[0.0, 0.0, 16.0, 16.0]]]), (images.shape[0], 1, 1))
        self.rpn_outputs(features)
        logits, deltas = self.box_outputs(features, dummy_rois, train=False)
        return {"logits": logits, "deltas": deltas}

    def detect(self, features: Features, images: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        """Inference: proposals (test sizes), box head, post-processing -> the detections dict."""
        proposals, _, proposal_valid = self.proposals(features, image_sizes, train=False)
        return self.detect_from_proposals(features, proposals, proposal_valid, image_sizes)

    def losses(self, features: Features, images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        """The RPN's losses on its sampled anchors, then the box head's on RoIs sampled from the
        RPN's proposals (computed without gradient) and the ground truth."""
        rpn_key, roi_key = jax.random.split(self.make_rng("sampling"))
        objectness, deltas = self.rpn_outputs(features)
        anchors = self.anchors(features)
        rpn_part = self.rpn_losses(objectness, deltas, anchors, targets, rpn_key)
        proposals, _, proposal_valid = self._select(
            jax.lax.stop_gradient(objectness), jax.lax.stop_gradient(deltas), anchors, image_sizes, train=True
        )
        roi_part = self.roi_losses(features, proposals, proposal_valid, targets, roi_key)
        num_proposals = {"rpn_num_proposals": jnp.sum(proposal_valid) / images.shape[0]}
        return {
            "losses": {**rpn_part["losses"], **roi_part["losses"]},
            "metrics": {**rpn_part["metrics"], **num_proposals, **roi_part["metrics"]},
        }

    # --- RPN ------------------------------------------------------------------------------------
    def anchors(self, features: Features) -> list[jax.Array]:
        """Per RPN level, [H_l * W_l * A, 4] constant anchors in input pixels (detectron2
        convention, offset 0)."""
        s = self.settings
        return [
            vops.grid_anchors(
                features[level].shape[1:3], 2**level, sizes, s.anchor_aspect_ratios, convention="detectron2"
            )
            for level, sizes in zip(self.rpn_levels(), s.anchor_sizes)
        ]

    def rpn_outputs(self, features: Features) -> tuple[list[jax.Array], list[jax.Array]]:
        """(objectness: L arrays float32 [B, A_l], deltas: L arrays float32 [B, A_l, 4])."""
        return self.rpn_head([features[level] for level in self.rpn_levels()])

    def rpn_losses(self, objectness, deltas, anchors, targets: dict, key: jax.Array) -> dict:
        """RPN targets and losses over the batch.

        objectness, deltas: `rpn_outputs`; anchors: `anchors`; targets: the checked contract dict
        ('boxes' [B, G, 4], 'valid', 'is_crowd' [B, G]); key: PRNG key of the anchor sampling.
        Returns {'losses': {'loss_rpn_cls', 'loss_rpn_loc'}, 'metrics': {'rpn_num_pos_anchors'}}.
        """
        s = self.settings
        batch = targets["boxes"].shape[0]
        labels, box_targets = jax.vmap(
            functools.partial(
                rpn.rpn_targets,
                fg_iou_threshold=s.rpn_fg_iou_threshold,
                bg_iou_threshold=s.rpn_bg_iou_threshold,
                num_samples=s.rpn_num_samples,
                positive_fraction=s.rpn_positive_fraction,
            ),
            in_axes=(None, 0, 0, 0, 0),
        )(
            jnp.concatenate(anchors),
            targets["boxes"],
            targets["valid"],
            targets["is_crowd"],
            jax.random.split(key, batch),
        )
        losses = rpn.rpn_losses(
            jnp.concatenate(objectness, 1),
            jnp.concatenate(deltas, 1),
            labels,
            box_targets,
            s.rpn_num_samples,
            smooth_l1_beta=s.rpn_smooth_l1_beta,
        )
        return {"losses": losses, "metrics": {"rpn_num_pos_anchors": jnp.sum(labels == 1) / batch}}

    def proposals(self, features: Features, image_sizes: jax.Array, train: bool):
        """(boxes [B, P, 4] input pixels, scores [B, P] logits, valid [B, P]) with the RPN outputs
        taken as constants; P = rpn_post_nms_topk_train / _test."""
        objectness, deltas = jax.lax.stop_gradient(self.rpn_outputs(features))
        return self._select(objectness, deltas, self.anchors(features), image_sizes, train)

    def _select(self, objectness, deltas, anchors, image_sizes, train: bool):
        s = self.settings
        select = functools.partial(
            rpn.select_proposals,
            pre_nms_topk=s.rpn_pre_nms_topk_train if train else s.rpn_pre_nms_topk_test,
            post_nms_topk=s.rpn_post_nms_topk_train if train else s.rpn_post_nms_topk_test,
            nms_threshold=s.rpn_nms_threshold,
            min_size=s.rpn_min_size,
        )
        return jax.vmap(select, in_axes=(0, 0, None, 0))(objectness, deltas, anchors, image_sizes)

    # --- RoI heads ------------------------------------------------------------------------------
    def box_outputs(self, features: Features, boxes: jax.Array, train: bool):
        """boxes [B, R, 4] input pixels -> (logits float32 [B, R, C + 1], deltas float32 [B, R, C, 4])."""
        batch, num_rois = boxes.shape[:2]
        logits, deltas = self.box_head(self.pool_rois(features, boxes), train)
        return (logits.reshape(batch, num_rois, -1), deltas.reshape(batch, num_rois, self.num_classes, 4))

    def roi_losses(self, features: Features, proposals, proposal_valid, targets: dict, key: jax.Array) -> dict:
        """RoI sampling, then the RoI heads' losses on the sampled RoIs (`roi_head_losses`).

        proposals: [B, P, 4] input pixels, proposal_valid: [B, P] bool (no gradient); targets: the
        checked contract dict ('boxes', 'classes', 'valid', 'is_crowd'); key: PRNG key of the RoI
        sampling. Returns {'losses': {...}, 'metrics': {...}}.
        """
        return self.roi_head_losses(features, self.sample_rois(proposals, proposal_valid, targets, key), targets)

    def sample_rois(self, proposals, proposal_valid, targets: dict, key: jax.Array) -> dict[str, jax.Array]:
        """`box_head.roi_targets` per image: {'boxes' [B, R, 4], 'classes' [B, R], 'valid' [B, R],
        'box_targets' [B, R, 4], 'gt_index' [B, R]}, R = roi_num_samples, foreground RoIs first."""
        s = self.settings
        batch = proposals.shape[0]
        return jax.vmap(
            functools.partial(
                roi_box_head.roi_targets,
                num_classes=self.num_classes,
                iou_threshold=s.roi_iou_threshold,
                num_samples=s.roi_num_samples,
                positive_fraction=s.roi_positive_fraction,
                append_gt=s.roi_append_gt,
                bg_iou_low=s.roi_bg_iou_low,
            )
        )(
            proposals,
            proposal_valid,
            targets["boxes"],
            targets["classes"],
            targets["valid"],
            targets["is_crowd"],
            jax.random.split(key, batch),
        )

    def roi_head_losses(self, features: Features, sampled: dict[str, jax.Array], targets: dict) -> dict:
        """Fast R-CNN losses on the sampled RoIs (`sample_rois`) -> {'losses': {'loss_cls',
        'loss_box_reg'}, 'metrics': {'roi_num_fg_samples', 'roi_cls_accuracy', 'roi_fg_cls_accuracy'}}."""
        del targets  # the box head's targets are in `sampled`
        logits, deltas = self.box_outputs(features, sampled["boxes"], train=True)
        return self.box_losses(sampled, logits, deltas)

    def box_losses(self, sampled: dict[str, jax.Array], logits: jax.Array, deltas: jax.Array) -> dict:
        """Fast R-CNN losses of the box head's outputs on the sampled RoIs: logits [B, R, C + 1],
        deltas [B, R, C, 4] (`box_outputs`) -> `roi_head_losses`' dict."""
        s = self.settings
        batch = sampled["boxes"].shape[0]
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        head = roi_box_head.box_head_losses(
            flat(logits),
            flat(deltas),
            flat(sampled["classes"]),
            flat(sampled["valid"]),
            flat(sampled["box_targets"]),
            smooth_l1_beta=s.roi_smooth_l1_beta,
        )
        return {
            "losses": {"loss_cls": head["loss_cls"], "loss_box_reg": head["loss_box_reg"]},
            "metrics": {
                "roi_num_fg_samples": head["num_fg"] / batch,
                "roi_cls_accuracy": head["cls_accuracy"],
                "roi_fg_cls_accuracy": head["fg_cls_accuracy"],
            },
        }

    def detect_from_proposals(
        self, features: Features, proposals: jax.Array, proposal_valid: jax.Array, image_sizes: jax.Array
    ) -> dict[str, jax.Array]:
        """The RoI heads at inference: proposals [B, P, 4] input pixels (valid [B, P]) -> the
        detections dict (models/detector.py)."""
        logits, deltas = self.box_outputs(features, proposals, train=False)
        s = self.settings
        post_process = functools.partial(
            roi_box_head.detect,
            score_threshold=s.test_score_threshold,
            nms_threshold=s.test_nms_threshold,
            max_detections=s.test_max_detections,
        )
        return stack_detections(jax.vmap(post_process)(logits, deltas, proposals, proposal_valid, image_sizes))


def _check_stride(features: Features, level: int, images: jax.Array) -> None:
    """Anchors and poolers assume level l has stride 2**l (a ResNet with the 'imagenet' stem)."""
    expected = -(-images.shape[1] // 2**level)
    if features[level].shape[1] != expected:
        raise ValueError(
            f"level {level} must have stride {2**level} (height {expected} for input "
            f"{images.shape[1]}), got height {features[level].shape[1]}: the detectors "
            f"need a backbone with model.stem='imagenet'"
        )


class FasterRCNN(TwoStageDetector):
    """Faster R-CNN with a ResNet-FPN backbone (module docstring).

    The backbone must give C2..C5 at strides 4..32; the input side must be a multiple of 32 (64
    keeps P6 exact). Uses settings.fpn_channels, box_head_fc_dim and box_head_num_fc.
    """

    def setup(self):
        super().setup()
        s = self.settings
        self.fpn = FPN(s.fpn_channels, dtype=self.dtype)
        self.box_head = roi_box_head.FCBoxHead(self.num_classes, s.box_head_fc_dim, s.box_head_num_fc, dtype=self.dtype)

    @classmethod
    def check_settings(cls, settings: RCNNSettings) -> None:
        super().check_settings(settings)
        require(len(settings.anchor_sizes) == 5, "anchor_sizes", settings.anchor_sizes,
                "needs 5 levels (P2..P6) for faster_rcnn")  # fmt: skip
        require(settings.roi_pooler_type == "align", "roi_pooler_type", settings.roi_pooler_type,
                "is not 'align': faster_rcnn (FPN) pools with 'align'")  # fmt: skip

    def rpn_levels(self):
        return (2, 3, 4, 5, 6)

    def features(self, images, train):
        if images.shape[1] % 32 or images.shape[2] % 32:
            raise ValueError(f"FasterRCNN (FPN) needs an input side that is a multiple of 32, got {images.shape[1:3]}")
        pyramid = self.fpn(self.backbone(images, train))
        features = {int(name[1:]): value for name, value in pyramid.items()}
        _check_stride(features, 2, images)
        return features

    def pool_rois(self, features, boxes):
        return self.pool_fpn_rois(features, boxes, self.settings.roi_pooler_resolution)

    def pool_fpn_rois(self, features: Features, boxes: jax.Array, resolution: int) -> jax.Array:
        """Multilevel RoIAlign on P2..P5: boxes [B, R, 4] input pixels -> [B * R, resolution,
        resolution, C] (image-major), each RoI on its level (roi_canonical_size at level 4)."""
        s = self.settings
        batch, num_rois = boxes.shape[:2]
        flat = boxes.reshape(-1, 4)
        levels = vops.assign_fpn_levels(flat, 2, 5, canonical_size=s.roi_canonical_size, canonical_level=4)
        return vops.multilevel_roi_align(
            {level: features[level] for level in (2, 3, 4, 5)},
            flat,
            jnp.repeat(jnp.arange(batch), num_rois),
            levels,
            resolution,
            s.roi_sampling_ratio,
            aligned=True,
        )


class FasterRCNNC4(TwoStageDetector):
    """Faster R-CNN C4 (module docstring): `backbone` is a 3-stage ResNet giving C4 at stride 16.

    Keyword-only attributes, the fourth stage of the ResNet the trunk was cut from (the builder
    passes them): res5_block ('basic' | 'bottleneck'), res5_blocks, res5_width (its inner width,
    8 x the ResNet's width), res5_norm, res5_bn_axis_name. RoIs are pooled
    roi_pooler_resolution x roi_pooler_resolution (14 in the paper; res5 halves it).
    """

    res5_block: str = dataclasses.field(kw_only=True)
    res5_blocks: int = dataclasses.field(kw_only=True)
    res5_width: int = dataclasses.field(kw_only=True)
    res5_norm: str = dataclasses.field(kw_only=True)
    res5_bn_axis_name: str | None = dataclasses.field(default=None, kw_only=True)

    def setup(self):
        super().setup()
        self.box_head = roi_box_head.Res5BoxHead(
            self.num_classes,
            self.res5_block,
            self.res5_blocks,
            self.res5_width,
            self.res5_norm,
            bn_axis_name=self.res5_bn_axis_name,
            dtype=self.dtype,
        )

    @classmethod
    def check_settings(cls, settings: RCNNSettings) -> None:
        super().check_settings(settings)
        require(len(settings.anchor_sizes) == 1, "anchor_sizes", settings.anchor_sizes,
                "needs 1 level (C4) for faster_rcnn_c4")  # fmt: skip

    def rpn_levels(self):
        return (4,)

    def features(self, images, train):
        features = self.backbone(images, train)
        if "C4" not in features or "C5" in features:
            raise ValueError(
                f"FasterRCNNC4 needs a 3-stage backbone ending at C4 (res5 is the box "
                f"head); it gives {sorted(features)}"
            )
        features = {4: features["C4"]}
        _check_stride(features, 4, images)
        return features

    def pool_rois(self, features, boxes):
        s = self.settings
        batch, num_rois = boxes.shape[:2]
        flat = boxes.reshape(-1, 4)
        indices = jnp.repeat(jnp.arange(batch), num_rois)
        if s.roi_pooler_type == "pool":
            return vops.roi_pool(features[4], flat, indices, s.roi_pooler_resolution, spatial_scale=1 / 16)
        return vops.roi_align(
            features[4],
            flat,
            indices,
            s.roi_pooler_resolution,
            spatial_scale=1 / 16,
            sampling_ratio=s.roi_sampling_ratio,
            aligned=True,
        )

"""Faster R-CNN (Ren et al., 2015): ResNet-FPN (Lin et al., 2017) and the original C4 variant.

Both models share one flow (`TwoStageDetector`), every shape static so a train step compiles once:

    images [B, S, S, 3] -> backbone (+ FPN) features -> RPN logits and deltas on anchors
      train: RPN targets/sampling/losses; proposals (train sizes, no gradient) + ground truth ->
             sampled RoIs -> RoI features -> box head -> Fast R-CNN losses
      test:  proposals (test sizes) -> RoI features -> box head -> per-class decode, NMS, top-k

* `FasterRCNN` (FPN): RPN on P2..P6 (one anchor size per level x aspect ratios), multilevel RoIAlign
  of each RoI on its FPN level (assign_fpn_levels, canonical 224 at level 4) from P2..P5, two FC
  layers (FCBoxHead).
* `FasterRCNNC4`: a 3-stage ResNet trunk (C2..C4), RPN on C4 (stride 16, all anchor sizes on one
  level), RoIAlign or RoIPool 14x14 on C4, res5 as the box head (Res5BoxHead), as in the paper.

Per-image logic (matching, sampling, proposal selection, post-processing) runs under `jax.vmap`;
the training losses are those of detectron2 (see heads/rpn.py and heads/roi_box_head.py).
Random sampling draws from the 'sampling' RNG stream: apply(..., rngs={'sampling': key}).

Inputs: `images` float [B, S, S, 3]; `image_sizes` float [B, 2] (height, width) of each image
inside the zero-padded canvas (proposals and detections are clipped to it; None = the canvas);
in training `gt_boxes` [B, G, 4] (x1, y1, x2, y2) input pixels, `gt_classes` int [B, G] in 0..C-1,
`gt_valid` bool [B, G], `gt_is_crowd` bool [B, G] (crowd boxes are ignored by the matchers).
Outputs: train -> {'loss': scalar, 'losses': {name: scalar}, 'metrics': {name: scalar}};
test -> {'boxes' [B, K, 4], 'scores' [B, K], 'classes' [B, K] int32, 'valid' [B, K] bool} with
K = max_detections, boxes in input pixels. `init` (train=False) runs the heads on one dummy RoI per
image instead of the whole inference (module.is_initializing()).
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
from vision_jax.models.detector import check_train_inputs, image_sizes_or_canvas
from vision_jax.models.rcnn import box_head as roi_box_head
from vision_jax.models.rcnn import rpn


@dataclasses.dataclass(frozen=True)
class RPNSettings:
    """detectron2's MODEL.RPN / ANCHOR_GENERATOR keys (FPN defaults)."""

    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou_threshold: float = 0.7
    bg_iou_threshold: float = 0.3
    num_samples: int = 256  # anchors sampled per image
    positive_fraction: float = 0.5
    pre_nms_topk_train: int = 2000  # per level
    pre_nms_topk_test: int = 1000
    post_nms_topk_train: int = 1000  # per image
    post_nms_topk_test: int = 1000
    nms_threshold: float = 0.7
    min_size: float = 0.0
    smooth_l1_beta: float = 0.0


@dataclasses.dataclass(frozen=True)
class RoISettings:
    """detectron2's MODEL.ROI_HEADS / ROI_BOX_HEAD / TEST keys (FPN defaults)."""

    pooler_resolution: int = 7
    sampling_ratio: int = 2
    pooler_type: str = "align"  # 'align' (RoIAlign, aligned=True) or 'pool' (RoIPool; C4 only)
    canonical_size: float = 224.0  # FPN level assignment: a canonical_size box goes to level 4
    num_samples: int = 512  # RoIs sampled per image
    positive_fraction: float = 0.25
    iou_threshold: float = 0.5
    append_gt: bool = True
    smooth_l1_beta: float = 0.0
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100


POOLER_TYPES = ("align", "pool")


class TwoStageDetector(nn.Module):
    """The shared flow (module docstring). Subclasses define `setup` (self.backbone, self.rpn_head,
    self.box_head), `features`, `rpn_levels` and `pool_rois`."""

    backbone: nn.Module
    num_classes: int
    rpn: RPNSettings = RPNSettings()
    roi: RoISettings = RoISettings()
    dtype: Any = None

    # --- pieces a subclass supplies -------------------------------------------------------------
    def features(self, images: jax.Array, train: bool) -> dict[int, jax.Array]:
        """{level: [B, S / 2**level, S / 2**level, C]} for the RPN and the RoI pooler."""
        raise NotImplementedError

    def rpn_levels(self) -> tuple[int, ...]:
        raise NotImplementedError

    def pool_rois(self, features: dict[int, jax.Array], boxes: jax.Array) -> jax.Array:
        """boxes [B, R, 4] -> RoI features [B * R, h, w, C] (image-major)."""
        raise NotImplementedError

    # --- shared flow ----------------------------------------------------------------------------
    def anchors(self, features: dict[int, jax.Array]) -> list[jax.Array]:
        """Per RPN level, [H_l * W_l * A, 4] constant anchors (detectron2 convention, offset 0)."""
        levels = self.rpn_levels()
        if len(self.rpn.anchor_sizes) != len(levels):
            raise ValueError(
                f"rpn anchor_sizes has {len(self.rpn.anchor_sizes)} entries for the {len(levels)} RPN levels {levels}"
            )
        return [
            vops.grid_anchors(
                features[level].shape[1:3], 2**level, sizes, self.rpn.aspect_ratios, convention="detectron2"
            )
            for level, sizes in zip(levels, self.rpn.anchor_sizes)
        ]

    def rpn_outputs(self, features: dict[int, jax.Array]):
        """(objectness: L arrays [B, A_l], deltas: L arrays [B, A_l, 4])."""
        return self.rpn_head([features[level] for level in self.rpn_levels()])

    def proposals(self, features: dict[int, jax.Array], image_sizes: jax.Array, train: bool):
        """(boxes [B, P, 4], scores [B, P], valid [B, P]) with RPN outputs taken as constants."""
        objectness, deltas = jax.lax.stop_gradient(self.rpn_outputs(features))
        return self._select(objectness, deltas, self.anchors(features), image_sizes, train)

    def _select(self, objectness, deltas, anchors, image_sizes, train: bool):
        settings = self.rpn
        select = functools.partial(
            rpn.select_proposals,
            pre_nms_topk=settings.pre_nms_topk_train if train else settings.pre_nms_topk_test,
            post_nms_topk=settings.post_nms_topk_train if train else settings.post_nms_topk_test,
            nms_threshold=settings.nms_threshold,
            min_size=settings.min_size,
        )
        return jax.vmap(select, in_axes=(0, 0, None, 0))(objectness, deltas, anchors, image_sizes)

    def box_outputs(self, features: dict[int, jax.Array], boxes: jax.Array, train: bool):
        """boxes [B, R, 4] -> (logits [B, R, C + 1], deltas [B, R, C, 4])."""
        batch, num_rois = boxes.shape[:2]
        logits, deltas = self.box_head(self.pool_rois(features, boxes), train)
        return (logits.reshape(batch, num_rois, -1), deltas.reshape(batch, num_rois, self.num_classes, 4))

    def detect(self, features: dict[int, jax.Array], image_sizes: jax.Array) -> dict[str, jax.Array]:
        """Inference from features: proposals, box head, post-processing (module docstring)."""
        proposals, _, proposal_valid = self.proposals(features, image_sizes, train=False)
        return self.detect_from_proposals(features, proposals, proposal_valid, image_sizes)

    def detect_from_proposals(
        self, features: dict[int, jax.Array], proposals: jax.Array, proposal_valid: jax.Array, image_sizes: jax.Array
    ) -> dict[str, jax.Array]:
        """The RoI heads at inference: proposals [B, P, 4] (valid [B, P]) -> detections."""
        logits, deltas = self.box_outputs(features, proposals, train=False)
        settings = self.roi
        post_process = functools.partial(
            roi_box_head.detect,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            max_detections=settings.max_detections,
        )
        boxes, scores, classes, valid = jax.vmap(post_process)(logits, deltas, proposals, proposal_valid, image_sizes)
        return {"boxes": boxes, "scores": scores, "classes": classes, "valid": valid}

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
        self._validate(images)
        batch = images.shape[0]
        image_sizes = image_sizes_or_canvas(images, image_sizes)
        features = self.features(images, train)
        if self.is_initializing() and not train:
            # Every parameter exists once the heads have run; proposal selection and post-processing
            # have none, and skipping them makes `init` compile several times faster.
            dummy_rois = jnp.tile(jnp.asarray([[[0.0, 0.0, 16.0, 16.0]]]), (batch, 1, 1))
            self.rpn_outputs(features)
            logits, deltas = self.box_outputs(features, dummy_rois, train=False)
            return {"logits": logits, "deltas": deltas}
        if not train:
            return self.detect(features, image_sizes)
        gt_is_crowd = check_train_inputs(gt_boxes, gt_classes, gt_valid, gt_is_crowd)
        return self._train_losses(
            features,
            image_sizes,
            gt_boxes.astype(jnp.float32),
            gt_classes.astype(jnp.int32),
            gt_valid.astype(bool),
            gt_is_crowd.astype(bool),
        )

    def _train_losses(self, features, image_sizes, gt_boxes, gt_classes, gt_valid, gt_is_crowd):
        batch = gt_boxes.shape[0]
        rpn_key, roi_key = jax.random.split(self.make_rng("sampling"))
        objectness, deltas = self.rpn_outputs(features)
        anchors = self.anchors(features)
        s = self.rpn
        labels, box_targets = jax.vmap(
            functools.partial(
                rpn.rpn_targets,
                fg_iou_threshold=s.fg_iou_threshold,
                bg_iou_threshold=s.bg_iou_threshold,
                num_samples=s.num_samples,
                positive_fraction=s.positive_fraction,
            ),
            in_axes=(None, 0, 0, 0, 0),
        )(jnp.concatenate(anchors), gt_boxes, gt_valid, gt_is_crowd, jax.random.split(rpn_key, batch))
        losses = rpn.rpn_losses(
            jnp.concatenate(objectness, 1),
            jnp.concatenate(deltas, 1),
            labels,
            box_targets,
            s.num_samples,
            s.smooth_l1_beta,
        )

        proposals, _, proposal_valid = self._select(
            jax.lax.stop_gradient(objectness), jax.lax.stop_gradient(deltas), anchors, image_sizes, train=True
        )
        r = self.roi
        rois, classes, valid, targets = jax.vmap(
            functools.partial(
                roi_box_head.roi_targets,
                num_classes=self.num_classes,
                iou_threshold=r.iou_threshold,
                num_samples=r.num_samples,
                positive_fraction=r.positive_fraction,
                append_gt=r.append_gt,
            )
        )(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, gt_is_crowd, jax.random.split(roi_key, batch))
        logits, box_deltas = self.box_outputs(features, rois, train=True)
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        head = roi_box_head.box_head_losses(
            flat(logits), flat(box_deltas), flat(classes), flat(valid), flat(targets), r.smooth_l1_beta
        )
        losses.update({k: head[k] for k in ("loss_cls", "loss_box_reg")})
        metrics = {
            "rpn_num_pos_anchors": jnp.sum(labels == 1) / batch,
            "rpn_num_proposals": jnp.sum(proposal_valid) / batch,
            "roi_num_fg_samples": head["num_fg"] / batch,
            "roi_cls_accuracy": head["cls_accuracy"],
            "roi_fg_cls_accuracy": head["fg_cls_accuracy"],
        }
        return {"loss": sum(losses.values()), "losses": losses, "metrics": metrics}

    def _validate(self, images: jax.Array) -> None:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
        if self.roi.pooler_type not in POOLER_TYPES:
            raise ValueError(f"unknown roi pooler_type {self.roi.pooler_type!r}; expected one of {POOLER_TYPES}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")


def _check_stride(features: dict[int, jax.Array], level: int, images: jax.Array) -> None:
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

    Extra attributes: fpn_channels (256), rpn_conv_channels (None = fpn_channels), fc_dim (1024),
    num_fc (2). The backbone must give C2..C5 at strides 4..32; the input side must be a multiple
    of 32 (64 keeps P6 exact).
    """

    fpn_channels: int = 256
    fc_dim: int = 1024
    num_fc: int = 2

    def setup(self):
        self.fpn = FPN(self.fpn_channels, dtype=self.dtype)
        self.rpn_head = rpn.RPNHead(len(self.rpn.aspect_ratios) * len(self.rpn.anchor_sizes[0]), dtype=self.dtype)
        self.box_head = roi_box_head.FCBoxHead(self.num_classes, self.fc_dim, self.num_fc, dtype=self.dtype)

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
        batch, num_rois = boxes.shape[:2]
        flat = boxes.reshape(-1, 4)
        levels = vops.assign_fpn_levels(flat, 2, 5, canonical_size=self.roi.canonical_size, canonical_level=4)
        return vops.multilevel_roi_align(
            {level: features[level] for level in (2, 3, 4, 5)},
            flat,
            jnp.repeat(jnp.arange(batch), num_rois),
            levels,
            self.roi.pooler_resolution,
            self.roi.sampling_ratio,
            aligned=True,
        )


class FasterRCNNC4(TwoStageDetector):
    """Faster R-CNN C4 (module docstring): `backbone` is a 3-stage ResNet giving C4 at stride 16.

    Extra attributes: res5_block ('bottleneck'), res5_blocks (3), res5_width (512), res5_norm
    ('batch'); RoISettings.pooler_resolution is 14 (res5 halves it to 7).
    """

    res5_block: str = "bottleneck"
    res5_blocks: int = 3
    res5_width: int = 512
    res5_norm: str = "batch"

    def setup(self):
        num_anchors = len(self.rpn.aspect_ratios) * len(self.rpn.anchor_sizes[0])
        self.rpn_head = rpn.RPNHead(num_anchors, dtype=self.dtype)
        self.box_head = roi_box_head.Res5BoxHead(
            self.num_classes, self.res5_block, self.res5_blocks, self.res5_width, norm=self.res5_norm, dtype=self.dtype
        )

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
        batch, num_rois = boxes.shape[:2]
        flat = boxes.reshape(-1, 4)
        indices = jnp.repeat(jnp.arange(batch), num_rois)
        size = self.roi.pooler_resolution
        if self.roi.pooler_type == "pool":
            return vops.roi_pool(features[4], flat, indices, size, spatial_scale=1 / 16)
        return vops.roi_align(
            features[4], flat, indices, size, spatial_scale=1 / 16, sampling_ratio=self.roi.sampling_ratio, aligned=True
        )

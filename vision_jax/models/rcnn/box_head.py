"""Fast R-CNN box head (Girshick, 2015) as detectron2's StandardROIHeads: targets, losses, inference.

Static-shape versions of detectron2's pieces:

* `roi_targets` (per image): the ground-truth boxes are appended to the proposals
  (PROPOSAL_APPEND_GT), each candidate is matched at IoU >= `iou_threshold` (0.5, no ignore band,
  no low-quality matches) and a fixed-size random sample of `num_samples` (512) candidates is
  drawn with at most `positive_fraction` (25%) foreground. Background has class C (the last of
  C + 1 logits, detectron2's convention); class-specific box targets use weights (10, 10, 5, 5).
* `box_head_losses`: softmax cross-entropy over every sampled RoI (mean), and L1 (smooth-L1 for
  beta > 0) on the foreground RoIs' deltas of their ground-truth class, summed and divided by the
  number of sampled RoIs (detectron2's FastRCNNOutputLayers.losses).
* `detect` (per image): softmax scores without the background, boxes decoded per class and
  clipped to the image, candidates with score > `score_threshold` (0.05), class-aware NMS at
  `nms_threshold` (0.5), the best `max_detections` (100) (fast_rcnn_inference_single_image).

Heads map pooled RoI features to (class logits [R, C + 1], deltas [R, C, 4]):
`FCBoxHead` (flatten + num_fc x FC-1024 + ReLU, the FPN model's) and `Res5BoxHead` (ResNet's
res5 stage + global average pooling, the C4 model's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vision_jax.ops as vops
from vision_jax.models.backbones.fpn import fpn_kernel_init
from vision_jax.models.backbones.resnet import ResNetStage

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class BoxPredictor(nn.Module):
    """Class logits (C + 1, background last) and class-specific deltas from RoI vectors [R, D].

    Initialised as detectron2: logits ~ N(0, 0.01), deltas ~ N(0, 0.001), zero biases.
    Returns (float32 [R, C + 1], float32 [R, C, 4]).
    """

    num_classes: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array):
        logits = nn.Dense(
            self.num_classes + 1, dtype=self.dtype, kernel_init=nn.initializers.normal(0.01), name="cls_score"
        )(x)
        deltas = nn.Dense(
            self.num_classes * 4, dtype=self.dtype, kernel_init=nn.initializers.normal(0.001), name="bbox_pred"
        )(x)
        return (logits.astype(jnp.float32), deltas.astype(jnp.float32).reshape(x.shape[0], self.num_classes, 4))


class FCBoxHead(nn.Module):
    """detectron2's FastRCNNConvFCHead with NUM_FC fully connected layers, then BoxPredictor.

    __call__(pooled: [R, h, w, C], train) -> (logits [R, C + 1], deltas [R, C, 4]).
    """

    num_classes: int
    fc_dim: int = 1024
    num_fc: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool = False):
        del train  # no batch statistics in this head
        x = pooled.reshape(pooled.shape[0], -1)
        for index in range(self.num_fc):
            x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, kernel_init=fpn_kernel_init, name=f"fc{index + 1}")(x))
        return BoxPredictor(self.num_classes, dtype=self.dtype, name="predictor")(x)


class Res5BoxHead(nn.Module):
    """The C4 model's head: ResNet's res5 stage (stride 2) on the pooled RoIs, global average pool.

    __call__(pooled: [R, 14, 14, C4], train) -> (logits [R, C + 1], deltas [R, C, 4]).
    """

    num_classes: int
    block: str = "bottleneck"
    num_blocks: int = 3
    width: int = 512  # inner width of the res5 blocks (ResNet's 8 x base width)
    norm: str = "batch"
    bn_axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool = False):
        x = ResNetStage(
            self.block,
            self.num_blocks,
            self.width,
            strides=2,
            norm=self.norm,
            dtype=self.dtype,
            bn_axis_name=self.bn_axis_name,
            name="res5",
        )(pooled, train)
        return BoxPredictor(self.num_classes, dtype=self.dtype, name="predictor")(x.mean(axis=(1, 2)))


def roi_targets(
    proposals: jax.Array,
    proposal_valid: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    gt_is_crowd: jax.Array,
    key: jax.Array,
    *,
    num_classes: int,
    iou_threshold: float = 0.5,
    num_samples: int = 512,
    positive_fraction: float = 0.25,
    append_gt: bool = True,
    box_weights: Sequence[float] = BOX_WEIGHTS,
):
    """Sampled RoIs of one image and their targets (module docstring).

    Args:
      proposals: [P, 4]; proposal_valid: [P] bool; gt_boxes: [G, 4]; gt_classes: [G] int in
      0..C-1; gt_valid, gt_is_crowd: [G] bool; key: PRNG key.
    Returns:
      boxes: float32 [num_samples, 4] sampled RoIs (zeros on padding rows);
      classes: int32 [num_samples], the matched class or num_classes for background;
      valid: bool [num_samples], False on padding rows (fewer candidates than num_samples);
      box_targets: float32 [num_samples, 4] deltas to the matched ground truth.
    """
    candidates, candidate_valid = proposals, proposal_valid
    if append_gt:
        candidates = jnp.concatenate([proposals, gt_boxes], axis=0)
        candidate_valid = jnp.concatenate([proposal_valid, gt_valid & ~gt_is_crowd])
    matched, labels = vops.match_boxes(
        gt_boxes,
        gt_valid,
        candidates,
        gt_is_crowd,
        fg_threshold=iou_threshold,
        bg_threshold=iou_threshold,
        allow_low_quality_matches=False,
    )
    labels = jnp.where(candidate_valid, labels, -1)  # padding proposals are never sampled
    indices, valid = vops.sample_balanced(labels, key, num_samples, positive_fraction)
    safe = jnp.where(valid, indices, 0)
    boxes = jnp.where(valid[:, None], candidates[safe], 0.0)
    matched_gt = matched[safe]
    foreground = valid & (labels[safe] == 1)
    classes = jnp.where(foreground, gt_classes[matched_gt], num_classes).astype(jnp.int32)
    box_targets = vops.encode_boxes(gt_boxes[matched_gt], boxes, weights=box_weights)
    return boxes, classes, valid, jnp.where(foreground[:, None], box_targets, 0.0)


def box_head_losses(
    logits: jax.Array,
    deltas: jax.Array,
    classes: jax.Array,
    valid: jax.Array,
    box_targets: jax.Array,
    smooth_l1_beta: float = 0.0,
) -> dict[str, jax.Array]:
    """detectron2's Fast R-CNN losses over all sampled RoIs of a batch.

    Args:
      logits: [N, C + 1]; deltas: [N, C, 4]; classes: int [N] in 0..C (C = background);
      valid: bool [N]; box_targets: [N, 4].
    Returns:
      {'loss_cls', 'loss_box_reg', 'cls_accuracy', 'fg_cls_accuracy', 'num_fg'} scalars (the last
      three are metrics: accuracy over sampled RoIs, over foreground ones, foreground per batch).
    """
    num_classes = deltas.shape[1]
    count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, classes)
    foreground = valid & (classes < num_classes)
    class_deltas = jnp.take_along_axis(deltas, jnp.minimum(classes, num_classes - 1)[:, None, None], axis=1)[:, 0]
    box = vops.smooth_l1_loss(class_deltas, box_targets, beta=smooth_l1_beta).sum(-1)
    correct = jnp.argmax(logits, -1) == classes
    num_fg = jnp.sum(foreground).astype(jnp.float32)
    return {
        "loss_cls": jnp.sum(jnp.where(valid, cross_entropy, 0.0)) / count,
        "loss_box_reg": jnp.sum(jnp.where(foreground, box, 0.0)) / count,
        "cls_accuracy": jnp.sum(valid & correct) / count,
        "fg_cls_accuracy": jnp.sum(foreground & correct) / jnp.maximum(num_fg, 1.0),
        "num_fg": num_fg,
    }


def detect(
    logits: jax.Array,
    deltas: jax.Array,
    proposals: jax.Array,
    proposal_valid: jax.Array,
    image_size: jax.Array,
    *,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    box_weights: Sequence[float] = BOX_WEIGHTS,
):
    """Detections of one image (module docstring).

    Args:
      logits: [R, C + 1]; deltas: [R, C, 4]; proposals: [R, 4]; proposal_valid: [R] bool;
      image_size: [2] (height, width) to clip to.
    Returns:
      boxes float32 [K, 4], scores float32 [K], classes int32 [K] in 0..C-1, valid bool [K] with
      K = max_detections, by decreasing score; padding rows are zeros / class 0 / invalid.
    """
    num_rois, num_classes = deltas.shape[:2]
    scores = jax.nn.softmax(logits, axis=-1)[:, :num_classes]
    boxes = vops.decode_boxes(deltas, proposals[:, None, :], weights=box_weights)
    boxes = vops.clip_boxes(boxes, image_size[0], image_size[1]).reshape(-1, 4)
    classes = jnp.broadcast_to(jnp.arange(num_classes, dtype=jnp.int32), (num_rois, num_classes))
    classes, scores = classes.reshape(-1), scores.reshape(-1)
    usable = jnp.repeat(proposal_valid, num_classes) & jnp.all(jnp.isfinite(boxes), -1) & jnp.isfinite(scores)
    scores = jnp.where(usable, scores, -jnp.inf)
    indices, num_valid = vops.batched_nms(
        boxes, scores, classes, nms_threshold, max_detections, score_threshold=score_threshold
    )
    valid = jnp.arange(max_detections) < num_valid
    safe = jnp.where(valid, indices, 0)
    return (
        jnp.where(valid[:, None], boxes[safe], 0.0),
        jnp.where(valid, scores[safe], 0.0),
        jnp.where(valid, classes[safe], 0),
        valid,
    )

"""Fast R-CNN box head (Girshick, 2015) as detectron2's StandardROIHeads: targets, losses, inference.

Static-shape versions of detectron2's pieces; the hyper-parameters are RCNNSettings' `roi_*`,
`box_head_*` and `test_*` fields (settings.py), which the detectors (faster_rcnn.py) pass here:

* `roi_targets` (per image): the ground-truth boxes are appended to the proposals (append_gt,
  PROPOSAL_APPEND_GT), each candidate is matched at IoU >= `iou_threshold` (no ignore band, no
  low-quality matches) and a fixed-size random sample of `num_samples` candidates is drawn with
  at most `positive_fraction` foreground. Background has class C (the last of C + 1 logits,
  detectron2's convention); class-specific box targets use weights BOX_WEIGHTS (10, 10, 5, 5).
  Each sampled RoI also carries the index of its matched ground truth (mask targets need it).
* `box_head_losses`: softmax cross-entropy over every sampled RoI (mean), and L1 (smooth-L1 for
  beta > 0) on the foreground RoIs' deltas of their ground-truth class, summed and divided by the
  number of sampled RoIs (detectron2's FastRCNNOutputLayers.losses).
* `detect` (per image): boxes decoded per class, softmax scores without the background, then the
  one post-processor `vision_jax.ops.multiclass_detections` (clip to the image, drop padding
  proposals and non-finite candidates, score > `score_threshold`, class-aware NMS at
  `nms_threshold`, the best `max_detections`): detectron2's fast_rcnn_inference_single_image.

Heads map pooled RoI features to (class logits [R, C + 1], deltas [R, C, 4]):
`FCBoxHead` (flatten + num_fc x FC-fc_dim + ReLU, the FPN model's) and `Res5BoxHead` (ResNet's
res5 stage + global average pooling, the C4 model's).

Boxes are (x1, y1, x2, y2) in network-input pixels.
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
    """detectron2's FastRCNNConvFCHead with `num_fc` fully connected layers of `fc_dim` + ReLU,
    then BoxPredictor (RCNNSettings.box_head_num_fc / box_head_fc_dim).

    __call__(pooled: [R, h, w, C], train) -> (logits float32 [R, C + 1], deltas float32 [R, C, 4]).
    """

    num_classes: int
    fc_dim: int
    num_fc: int
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

    Attributes: block ('basic' | 'bottleneck'), num_blocks, width (inner width of the res5 blocks,
    8 x the ResNet's base width) and norm are the backbone ResNet's fourth stage; bn_axis_name is
    its cross-replica BatchNorm axis (vision_jax.models.from_config.bn_axis_name).

    __call__(pooled: [R, h, w, C4], train) -> (logits float32 [R, C + 1], deltas float32 [R, C, 4]);
    with return_features=True also res5's output [R, ceil(h / 2), ceil(w / 2), 4 x width] (the C4
    Mask R-CNN's mask head reads it).
    """

    num_classes: int
    block: str
    num_blocks: int
    width: int
    norm: str
    bn_axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool = False, return_features: bool = False):
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
        logits, deltas = BoxPredictor(self.num_classes, dtype=self.dtype, name="predictor")(x.mean(axis=(1, 2)))
        return (logits, deltas, x) if return_features else (logits, deltas)


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
    iou_threshold: float,
    num_samples: int,
    positive_fraction: float,
    append_gt: bool,
    bg_iou_low: float = 0.0,
    box_weights: Sequence[float] = BOX_WEIGHTS,
) -> dict[str, jax.Array]:
    """Sampled RoIs of one image and their targets (module docstring). Background candidates have
    IoU in [bg_iou_low, iou_threshold) (Fast R-CNN: [0.1, 0.5)); those below bg_iou_low are never
    sampled (0 = every candidate below iou_threshold is background, detectron2's default).

    Args:
      proposals: float [P, 4] input pixels; proposal_valid: bool [P]; gt_boxes: float [G, 4]
      input pixels; gt_classes: int [G] in 0..C-1; gt_valid, gt_is_crowd: bool [G]; key: PRNG key.
    Returns:
      {'boxes': float32 [num_samples, 4] sampled RoIs in input pixels (zeros on padding rows),
       'classes': int32 [num_samples], the matched class or num_classes for background,
       'valid': bool [num_samples], False on padding rows (fewer candidates than num_samples),
       'box_targets': float32 [num_samples, 4] deltas to the matched ground truth (zeros where
         not foreground),
       'gt_index': int32 [num_samples], the row of gt_boxes each RoI is matched to (meaningful
         where foreground: valid and class < num_classes)}.
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
        ignore_below=bg_iou_low,
    )
    labels = jnp.where(candidate_valid, labels, -1)  # padding proposals are never sampled
    indices, valid = vops.sample_balanced(labels, key, num_samples, positive_fraction)
    safe = jnp.where(valid, indices, 0)
    boxes = jnp.where(valid[:, None], candidates[safe], 0.0)
    gt_index = matched[safe].astype(jnp.int32)
    foreground = valid & (labels[safe] == 1)
    classes = jnp.where(foreground, gt_classes[gt_index], num_classes).astype(jnp.int32)
    box_targets = vops.encode_boxes(gt_boxes[gt_index], boxes, weights=box_weights)
    return {
        "boxes": boxes,
        "classes": classes,
        "valid": valid,
        "box_targets": jnp.where(foreground[:, None], box_targets, 0.0),
        "gt_index": gt_index,
    }


def box_head_losses(
    logits: jax.Array,
    deltas: jax.Array,
    classes: jax.Array,
    valid: jax.Array,
    box_targets: jax.Array,
    *,
    smooth_l1_beta: float,
) -> dict[str, jax.Array]:
    """detectron2's Fast R-CNN losses over all sampled RoIs of a batch.

    Args:
      logits: float [N, C + 1] (background last); deltas: float [N, C, 4]; classes: int [N] in
      0..C (C = background); valid: bool [N]; box_targets: float [N, 4] (BOX_WEIGHTS deltas);
      smooth_l1_beta: 0 = L1.
    Returns:
      {'loss_cls', 'loss_box_reg', 'cls_accuracy', 'fg_cls_accuracy', 'num_fg'} float32 scalars
      (the last three are metrics: accuracy over sampled RoIs, over foreground ones, and the
      number of foreground RoIs in the batch).
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
    score_threshold: float,
    nms_threshold: float,
    max_detections: int,
    box_weights: Sequence[float] = BOX_WEIGHTS,
) -> dict[str, jax.Array]:
    """Detections of one image (module docstring).

    Args:
      logits: float [R, C + 1] (background last); deltas: float [R, C, 4] (BOX_WEIGHTS);
      proposals: float [R, 4] input pixels; proposal_valid: bool [R]; image_size: [2] (height,
      width) in input pixels to clip to.
    Returns:
      `vision_jax.ops.multiclass_detections`' dict: 'boxes' float32 [K, 4] input pixels, 'scores'
      float32 [K], 'classes' int32 [K] in 0..C-1, 'valid' bool [K] with K = max_detections, by
      decreasing score; padding rows are zeros / class 0 / invalid.
    """
    boxes = vops.decode_boxes(deltas, proposals[:, None, :], weights=box_weights)  # [R, C, 4]
    return vops.multiclass_detections(
        boxes,
        vops.foreground_scores(logits),
        image_size,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
        valid=proposal_valid,
    )

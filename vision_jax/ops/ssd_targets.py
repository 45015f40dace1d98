"""SSD (Liu et al., 2016) training targets, loss and inference decoding, with static shapes.

Per image (wrap in ``jax.vmap`` for a batch), A default boxes and G padded ground-truth rows:

* ``ssd_match``: each default box takes its best ground truth if their IoU >= iou_threshold
  (0.5); then every valid ground truth takes its own best default box ("bipartite" step of the
  paper, torchvision's SSDMatcher), whatever that IoU.
* ``ssd_targets``: labels (k for class k, C = num_classes for background), box regression
  targets encoded with SSD's variances (0.1, 0.1, 0.2, 0.2), i.e. ``encode_boxes`` weights
  (10, 10, 5, 5).
* ``hard_negative_mask``: the 3:1 hard negative mining.
* ``ssd_loss`` (batched): (softmax CE over positives and mined negatives + smooth-L1 over
  positives) / number of positives in the batch.
* ``ssd_detect``: decoded boxes and softmax scores through ``multiclass_detections`` with a
  per-class top-k (torchvision's SSD post-processing).

Classifier logits are [..., C + 1] with **background last, index C** (the project's one
convention, ``vision_jax.ops.postprocess``), so class k is logit k. Boxes are (x1, y1, x2, y2) in
input pixels; default boxes come from ``ssd_default_boxes``. This module imports only jax and
numpy (the ops rule).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from vision_jax.ops.boxes import box_iou, decode_boxes, encode_boxes
from vision_jax.ops.losses import smooth_l1_loss
from vision_jax.ops.postprocess import foreground_scores, multiclass_detections

# SSD's "variances" (0.1, 0.1, 0.2, 0.2) expressed as BoxCoder weights (their inverses).
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def ssd_match(
    gt_boxes: jax.Array,
    gt_valid: jax.Array,
    default_boxes: jax.Array,
    gt_is_crowd: jax.Array | None = None,
    iou_threshold: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """Matches default boxes to ground truth (the paper's matching strategy).

    Rule, with IoU over *eligible* ground truth (valid and not crowd; padding and crowd rows are
    never matched):
      1. default box a is positive with gt argmax_g IoU(g, a) if that IoU >= iou_threshold;
      2. for every eligible g whose best IoU over default boxes is > 0, its best default box
         b(g) = argmax_a IoU(g, a) (lowest index on ties) becomes positive and matched to g,
         overriding step 1. When several ground truths share the same b(g), the one with the
         highest IoU with it wins (lowest gt index on ties); torchvision leaves this case to the
         order of a scatter. A ground truth that overlaps no default box at all (IoU 0, e.g. an
         empty box) forces nothing.

    Args:
      gt_boxes: [G, 4] float xyxy; gt_valid: [G] bool (False = padding);
      default_boxes: [A, 4] float xyxy; gt_is_crowd: [G] bool or None;
      iou_threshold: static or traced float.

    Returns:
      matched_gt: [A] int32 index into the G rows (0 where not positive).
      positive: [A] bool.
    """
    gt_boxes, default_boxes = jnp.asarray(gt_boxes), jnp.asarray(default_boxes)
    num_gt, num_boxes = gt_boxes.shape[0], default_boxes.shape[0]
    gt_valid = jnp.asarray(gt_valid, bool)
    if gt_valid.shape != (num_gt,):
        raise ValueError(f"gt_valid must be [G]={num_gt}; got shape {gt_valid.shape}")
    eligible = gt_valid
    if gt_is_crowd is not None:
        gt_is_crowd = jnp.asarray(gt_is_crowd, bool)
        if gt_is_crowd.shape != (num_gt,):
            raise ValueError(f"gt_is_crowd must be [G]={num_gt}; got shape {gt_is_crowd.shape}")
        eligible = eligible & ~gt_is_crowd
    if num_gt == 0:
        return jnp.zeros((num_boxes,), jnp.int32), jnp.zeros((num_boxes,), bool)
    # Ineligible rows sit below every real IoU (>= 0): they never win an argmax.
    iou = jnp.where(eligible[:, None], box_iou(gt_boxes, default_boxes), -1.0)  # [G, A]
    matched_gt = jnp.argmax(iou, axis=0).astype(jnp.int32)
    positive = jnp.max(iou, axis=0) >= iou_threshold

    best_box = jnp.argmax(iou, axis=1)  # [G]
    forces = eligible & (jnp.max(iou, axis=1) > 0)  # [G]
    is_forced = forces[:, None] & (jnp.arange(num_boxes)[None, :] == best_box[:, None])  # [G, A]
    forced_gt = jnp.argmax(jnp.where(is_forced, iou, -2.0), axis=0).astype(jnp.int32)
    any_forced = jnp.any(is_forced, axis=0)
    matched_gt = jnp.where(any_forced, forced_gt, matched_gt)
    positive = positive | any_forced
    return jnp.where(positive, matched_gt, 0), positive


def ssd_targets(
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    default_boxes: jax.Array,
    num_classes: int,
    gt_is_crowd: jax.Array | None = None,
    iou_threshold: float = 0.5,
    box_weights: Sequence[float] = SSD_BOX_WEIGHTS,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Classification and regression targets of one image.

    Args:
      gt_boxes [G, 4] xyxy input pixels, gt_classes [G] int in 0..C-1, gt_valid [G] bool,
      default_boxes [A, 4] xyxy input pixels, gt_is_crowd [G] bool or None;
      num_classes: C, the foreground classes (static int): the background label;
      iou_threshold as in ``ssd_match``; box_weights: ``encode_boxes`` weights (SSD: (10, 10, 5, 5)).
    Static under jit: `num_classes`.

    Returns:
      labels: [A] int32, k for a default box matched to class k, C (num_classes) for background:
        the index of the target logit when background is the last of the C + 1 logits.
      box_targets: [A, 4] float32 encoded deltas (zeros where not positive).
      positive: [A] bool.
    """
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"num_classes must be a Python int (the background label C), got {num_classes!r}") from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    matched_gt, positive = ssd_match(gt_boxes, gt_valid, default_boxes, gt_is_crowd, iou_threshold)
    gt_classes = jnp.asarray(gt_classes, jnp.int32)
    if gt_classes.shape != gt_valid.shape:
        raise ValueError(f"gt_classes must be [G]={gt_valid.shape}; got shape {gt_classes.shape}")
    if gt_boxes.shape[0] == 0:
        return (
            jnp.full(positive.shape, num_classes, jnp.int32),
            jnp.zeros(default_boxes.shape, jnp.float32),
            positive,
        )
    labels = jnp.where(positive, gt_classes[matched_gt], num_classes).astype(jnp.int32)
    targets = encode_boxes(jnp.asarray(gt_boxes)[matched_gt], jnp.asarray(default_boxes), box_weights)
    return labels, jnp.where(positive[:, None], targets, 0.0).astype(jnp.float32), positive


def hard_negative_mask(
    background_loss: jax.Array, positive: jax.Array, neg_pos_ratio: float = 3.0, min_negatives: int = 0
) -> jax.Array:
    """Hard negative mining of one image: the highest-loss negatives, neg_pos_ratio per positive.

    Negatives are the non-positive default boxes, ranked by ``background_loss`` (the
    cross-entropy of predicting background, -log softmax(logits)[C]) in descending order, ties
    broken by lower index. The top k = min(#negatives, max(floor(neg_pos_ratio * #positives),
    min_negatives)) are kept.

    Images without positives: with the default min_negatives=0 they keep no negatives, so they
    contribute nothing to the loss. This is the paper's Caffe MultiBoxLoss and torchvision's
    behaviour (3 * 0 = 0): the loss is normalised by the number of positives, and negatives of an
    image with no positive would be weighed against other images' positives. TF Object
    Detection API's ``min_negatives_per_image`` (min_negatives > 0) is the alternative, for data
    with many empty images.

    Args:
      background_loss: [A] float; positive: [A] bool; neg_pos_ratio: static or traced float;
      min_negatives: int.

    Returns:
      [A] bool, True for the mined negatives (never a positive).
    """
    background_loss, positive = jnp.asarray(background_loss), jnp.asarray(positive, bool)
    if background_loss.shape != positive.shape or background_loss.ndim != 1:
        raise ValueError(
            f"background_loss and positive must both be [A]; got {background_loss.shape}, {positive.shape}"
        )
    num_boxes = positive.shape[0]
    num_positive = jnp.sum(positive)
    num_negative = num_boxes - num_positive
    wanted = jnp.maximum(jnp.floor(neg_pos_ratio * num_positive).astype(jnp.int32), min_negatives)
    num_mined = jnp.minimum(wanted, num_negative)
    ranking = jnp.where(positive, -jnp.inf, background_loss)
    ranking = jnp.where(jnp.isnan(ranking), -jnp.inf, ranking)
    order = jnp.argsort(-ranking, stable=True)  # descending, lower index first on ties
    rank = jnp.zeros((num_boxes,), jnp.int32).at[order].set(jnp.arange(num_boxes, dtype=jnp.int32))
    return (rank < num_mined) & ~positive


def ssd_loss(
    class_logits: jax.Array,
    box_deltas: jax.Array,
    labels: jax.Array,
    box_targets: jax.Array,
    neg_pos_ratio: float = 3.0,
    min_negatives: int = 0,
    smooth_l1_beta: float = 1.0,
) -> dict[str, jax.Array]:
    """SSD's MultiBox loss over a batch (torchvision's SSD.compute_loss).

    Static under jit: `smooth_l1_beta`.

    Args:
      class_logits: [B, A, C + 1] float, background last (index C).
      box_deltas: [B, A, 4] float predicted deltas (same weights as the targets).
      labels: [B, A] int in 0..C from ``ssd_targets`` (k = class k, C = background);
      box_targets: [B, A, 4] float encoded deltas.
      neg_pos_ratio, min_negatives: see ``hard_negative_mask``; smooth_l1_beta: 1 (the paper).

    Returns:
      {'loss_cls': sum of CE over positives and mined negatives / N,
       'loss_box_reg': sum of smooth-L1 (summed over the 4 deltas) over positives / N,
       'num_positive', 'num_negative': float32 totals over the batch,
       'positive_accuracy': fraction of positives whose argmax is their class}
      with N = max(1, number of positives in the batch). Losses are float32.
    """
    class_logits = jnp.asarray(class_logits, jnp.float32)
    box_deltas = jnp.asarray(box_deltas, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    if class_logits.ndim != 3 or labels.shape != class_logits.shape[:2]:
        raise ValueError(f"class_logits [B, A, C+1] and labels [B, A] disagree: {class_logits.shape}, {labels.shape}")
    if box_deltas.shape != (*labels.shape, 4) or box_targets.shape != box_deltas.shape:
        raise ValueError(f"box_deltas and box_targets must be [B, A, 4]; got {box_deltas.shape}, {box_targets.shape}")
    log_probs = jax.nn.log_softmax(class_logits, axis=-1)
    cross_entropy = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]  # [B, A]
    background = class_logits.shape[-1] - 1  # C, the last logit
    positive = labels < background
    background_loss = jax.lax.stop_gradient(-log_probs[..., background])
    negative = jax.vmap(hard_negative_mask, in_axes=(0, 0, None, None))(
        background_loss, positive, neg_pos_ratio, min_negatives
    )
    num_positive = jnp.sum(positive).astype(jnp.float32)
    normaliser = jnp.maximum(num_positive, 1.0)
    loss_cls = jnp.sum(jnp.where(positive | negative, cross_entropy, 0.0)) / normaliser
    box_loss = jnp.sum(smooth_l1_loss(box_deltas, jnp.asarray(box_targets, jnp.float32), beta=smooth_l1_beta), axis=-1)
    loss_box = jnp.sum(jnp.where(positive, box_loss, 0.0)) / normaliser
    correct = positive & (jnp.argmax(class_logits, axis=-1) == labels)
    return {
        "loss_cls": loss_cls,
        "loss_box_reg": loss_box,
        "num_positive": num_positive,
        "num_negative": jnp.sum(negative).astype(jnp.float32),
        "positive_accuracy": jnp.sum(correct) / normaliser,
    }


def ssd_detect(
    class_logits: jax.Array,
    box_deltas: jax.Array,
    default_boxes: jax.Array,
    image_size: jax.Array,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    topk_candidates: int = 400,
    max_detections: int = 200,
    box_weights: Sequence[float] = SSD_BOX_WEIGHTS,
) -> dict[str, jax.Array]:
    """Inference post-processing of one image (torchvision's SSD.postprocess_detections).

    Boxes are decoded with ``decode_boxes`` (its exp clamp); scores are the softmax's foreground
    columns (``foreground_scores``); ``multiclass_detections`` then clips the boxes to the image,
    keeps per class the topk_candidates best boxes with score > score_threshold (lowest index
    first on ties) and runs class-aware NMS (IoU > nms_threshold suppresses) down to the
    max_detections best over all classes.

    Static under jit: `topk_candidates`, `max_detections`.

    Args:
      class_logits: [A, C + 1] float, background last (index C); box_deltas: [A, 4] float;
      default_boxes: [A, 4] xyxy input pixels; image_size: [2] (height, width) float (may be traced).
      score_threshold, nms_threshold: floats (may be traced); topk_candidates, max_detections:
      static ints; box_weights: those of the targets.

    Returns:
      {'boxes' [K, 4] float32 xyxy input pixels, 'scores' [K] float32, 'classes' [K] int32 in
      0..C-1, 'valid' [K] bool}, K = max_detections, by decreasing score; padding rows are zeros
      with valid False.
    """
    class_logits = jnp.asarray(class_logits, jnp.float32)
    if class_logits.ndim != 2:
        raise ValueError(f"class_logits must be [A, C + 1] (one image); got {class_logits.shape}")
    num_boxes = class_logits.shape[0]
    if box_deltas.shape != (num_boxes, 4) or default_boxes.shape != (num_boxes, 4):
        raise ValueError(f"box_deltas and default_boxes must be [A, 4]; got {box_deltas.shape}, {default_boxes.shape}")
    boxes = decode_boxes(jnp.asarray(box_deltas, jnp.float32), default_boxes, box_weights)
    return multiclass_detections(
        boxes,
        foreground_scores(class_logits),
        image_size,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
        topk_per_class=topk_candidates,
    )

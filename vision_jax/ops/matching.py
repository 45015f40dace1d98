"""Anchor/proposal to ground-truth matching and balanced fg/bg sampling, with static shapes.

``match_iou`` follows detectron2's ``Matcher`` (thresholds [bg, fg], labels [0, -1, 1]) and
``sample_balanced`` its ``subsample_labels``; both return fixed-size arrays so that a train step
compiles once whatever the number of objects.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vision_jax.ops.boxes import box_ioa, box_iou

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1


def match_iou(iou: jnp.ndarray, gt_valid: jnp.ndarray | None = None, fg_threshold: float = 0.7,
              bg_threshold: float = 0.3, allow_low_quality_matches: bool = True, ignore_below: float = 0.0):
    """Assigns each anchor to its best ground truth and labels it fg / bg / ignore.

    Rule (detectron2 ``Matcher([bg, fg], [0, -1, 1], allow_low_quality_matches)``), with q the
    anchor's best IoU over *valid* ground truth:
      q >= fg_threshold -> 1 (foreground); bg_threshold <= q < fg_threshold -> -1 (ignore);
      q < bg_threshold -> 0 (background). ``bg_threshold == fg_threshold`` gives no ignore band
      (Fast R-CNN's box head, 0.5). With ``ignore_below`` > 0, q < ignore_below -> -1 instead of
      background (Fast R-CNN's background band [0.1, 0.5): detectron2's Matcher([0.1, 0.5],
      [-1, 0, 1])); with no valid ground truth every anchor is then -1.
    Low-quality matches (Faster R-CNN's RPN): for each valid ground truth, every anchor whose IoU
    equals that ground truth's highest IoU becomes foreground, ties included. Deviation: a ground
    truth whose highest IoU is 0 (it overlaps no anchor, e.g. an empty box) adds none; detectron2
    would turn every anchor into foreground.

    Static under jit: `fg_threshold`, `bg_threshold`, `allow_low_quality_matches`, `ignore_below`.

    Args:
      iou: [G, A] float, IoU of ground truth g with anchor a.
      gt_valid: [G] bool; False rows (padding) are never matched. Default: all valid.
      fg_threshold, bg_threshold: see the rule; need bg_threshold <= fg_threshold.
      allow_low_quality_matches: see the rule.
      ignore_below: see the rule; needs ignore_below <= bg_threshold.

    Returns:
      matched_gt: [A] int32, argmax over valid ground truth (lowest index on ties); 0 when there
        is no valid ground truth. Meaningful where labels == 1.
      labels: [A] int32 in {1, 0, -1}; all 0 (all -1 with ignore_below > 0) when there is no valid
        ground truth.
    """
    if bg_threshold > fg_threshold:
        raise ValueError(f"bg_threshold={bg_threshold} must be <= fg_threshold={fg_threshold}")
    if not 0.0 <= ignore_below <= bg_threshold:
        raise ValueError(f"ignore_below={ignore_below} must be in [0, bg_threshold={bg_threshold}]")
    iou = jnp.asarray(iou)
    if iou.ndim != 2:
        raise ValueError(f"iou must be [G, A]; got shape {iou.shape}")
    num_gt = iou.shape[0]
    if gt_valid is None:
        gt_valid = jnp.ones((num_gt,), bool)
    gt_valid = jnp.asarray(gt_valid, bool)
    if gt_valid.shape != (num_gt,):
        raise ValueError(f"gt_valid must be [G]={num_gt}; got shape {gt_valid.shape}")
    # Padding rows sit below every real IoU (>= 0) so they never win an argmax. NaN IoU is
    # treated as no overlap.
    quality = jnp.where(gt_valid[:, None] & ~jnp.isnan(iou), iou, -1.0)
    if num_gt == 0:
        num_anchors = iou.shape[1]
        no_match = IGNORE if ignore_below > 0 else BACKGROUND
        return jnp.zeros((num_anchors,), jnp.int32), jnp.full((num_anchors,), no_match, jnp.int32)
    matched_gt = jnp.argmax(quality, axis=0).astype(jnp.int32)
    best_quality = jnp.max(quality, axis=0)
    labels = jnp.where(best_quality >= fg_threshold, FOREGROUND,
                       jnp.where(best_quality >= bg_threshold, IGNORE, BACKGROUND))
    if ignore_below > 0:
        labels = jnp.where(best_quality < ignore_below, IGNORE, labels)
    if allow_low_quality_matches:
        highest_per_gt = jnp.max(quality, axis=1, keepdims=True)
        is_best_for_some_gt = jnp.any((quality == highest_per_gt) & (highest_per_gt > 0), axis=0)
        labels = jnp.where(is_best_for_some_gt, FOREGROUND, labels)
    return matched_gt, labels.astype(jnp.int32)


def match_boxes(gt_boxes: jnp.ndarray, gt_valid: jnp.ndarray | None, anchors: jnp.ndarray,
                gt_is_crowd: jnp.ndarray | None = None, fg_threshold: float = 0.7,
                bg_threshold: float = 0.3, allow_low_quality_matches: bool = True,
                crowd_ioa_threshold: float = 0.7, ignore_below: float = 0.0):
    """``match_iou`` on the IoU of boxes, with padded and crowd ground truth handled.

    Crowd rule (Detectron's crowd filter): crowd boxes are never matched (as if padding); an
    anchor that would be background but whose intersection with some valid crowd box covers at
    least ``crowd_ioa_threshold`` of the anchor's own area (IoA) becomes ignore (-1), so the
    model is neither pushed towards nor away from crowd regions. Foreground stays foreground.

    Static under jit: `fg_threshold`, `bg_threshold`, `allow_low_quality_matches`, `ignore_below`.

    Args:
      gt_boxes: [G, 4] xyxy, padded to a fixed G.
      gt_valid: [G] bool (False = padding), or None for all valid.
      anchors: [A, 4] xyxy anchors or proposals (same pixel frame).
      gt_is_crowd: [G] bool, or None for no crowd.
      fg_threshold, bg_threshold, allow_low_quality_matches, ignore_below: see ``match_iou``.

    Returns:
      (matched_gt [A] int32, labels [A] int32 in {1, 0, -1}) as in ``match_iou``.
    """
    gt_boxes, anchors = jnp.asarray(gt_boxes), jnp.asarray(anchors)
    num_gt = gt_boxes.shape[0]
    gt_valid = jnp.ones((num_gt,), bool) if gt_valid is None else jnp.asarray(gt_valid, bool)
    gt_is_crowd = (jnp.zeros((num_gt,), bool) if gt_is_crowd is None
                   else jnp.asarray(gt_is_crowd, bool))
    for name, value in (("gt_valid", gt_valid), ("gt_is_crowd", gt_is_crowd)):
        if value.shape != (num_gt,):
            raise ValueError(f"{name} must be [G]={num_gt}; got shape {value.shape}")
    iou = box_iou(gt_boxes, anchors)
    matched_gt, labels = match_iou(iou, gt_valid & ~gt_is_crowd, fg_threshold, bg_threshold,
                                   allow_low_quality_matches, ignore_below)
    if num_gt:
        crowd = gt_valid & gt_is_crowd
        crowd_ioa = jnp.max(jnp.where(crowd[:, None], box_ioa(gt_boxes, anchors), 0.0), axis=0)
        labels = jnp.where((labels == BACKGROUND) & (crowd_ioa >= crowd_ioa_threshold),
                           IGNORE, labels)
    return matched_gt, labels


def _sample_counts(labels, num_samples, positive_fraction, bg_label):
    positive = (labels != IGNORE) & (labels != bg_label)
    negative = labels == bg_label
    max_positives = int(num_samples * positive_fraction)
    num_positives = jnp.minimum(jnp.sum(positive), max_positives).astype(jnp.int32)
    num_negatives = jnp.minimum(jnp.sum(negative), num_samples - num_positives).astype(jnp.int32)
    return positive, negative, max_positives, num_positives, num_negatives


def sample_balanced(labels: jnp.ndarray, key: jax.Array, num_samples: int,
                    positive_fraction: float, bg_label: int = BACKGROUND):
    """Fixed-size random sample of positives and negatives (detectron2 ``subsample_labels``).

    Positives are labels not in {-1, bg_label}; negatives are labels == bg_label. It samples
    p = min(#positives, int(num_samples * positive_fraction)) positives and
    n = min(#negatives, num_samples - p) negatives, uniformly without replacement: each eligible
    element gets a uniform random priority from ``key`` and ``top_k`` keeps the highest.

    Static under jit: `num_samples`, `positive_fraction`.

    Args:
      labels: [A] int; key: a PRNG key; num_samples: static int (e.g. 256 for the RPN, 512 for
        the box head); positive_fraction: static float in [0, 1].

    Returns:
      indices: [num_samples] int32 into labels: the p positives first, then the n negatives,
        then -1 padding.
      valid: [num_samples] bool, True for the p + n real samples.
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [A]; got shape {labels.shape}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1]; got {positive_fraction}")
    num_labels = labels.shape[0]
    positive, negative, max_positives, num_positives, num_negatives = _sample_counts(
        labels, num_samples, positive_fraction, bg_label)
    slots = jnp.arange(num_samples, dtype=jnp.int32)
    if num_labels == 0:
        return jnp.full((num_samples,), -1, jnp.int32), jnp.zeros((num_samples,), bool)
    priorities = jax.random.uniform(key, (num_labels,))
    # Ineligible elements get priority -1 < any uniform draw; they are cut by the counts.
    _, positive_order = jax.lax.top_k(jnp.where(positive, priorities, -1.0),
                                      max(min(max_positives, num_labels), 1))
    _, negative_order = jax.lax.top_k(jnp.where(negative, priorities, -1.0),
                                      min(num_samples, num_labels))
    from_positive = positive_order[jnp.clip(slots, 0, positive_order.shape[0] - 1)]
    from_negative = negative_order[jnp.clip(slots - num_positives, 0, negative_order.shape[0] - 1)]
    is_positive_slot = slots < num_positives
    valid = slots < num_positives + num_negatives
    indices = jnp.where(is_positive_slot, from_positive, from_negative)
    return jnp.where(valid, indices, -1).astype(jnp.int32), valid


def sample_balanced_masks(labels: jnp.ndarray, key: jax.Array, num_samples: int,
                          positive_fraction: float, bg_label: int = BACKGROUND):
    """``sample_balanced`` as masks over labels: (sampled_positive [A] bool, sampled_negative [A] bool).

    Static under jit: `num_samples`, `positive_fraction`.
    """
    labels = jnp.asarray(labels)
    indices, valid = sample_balanced(labels, key, num_samples, positive_fraction, bg_label)
    num_labels = labels.shape[0]
    # Invalid slots scatter to an extra dummy element that is dropped.
    targets = jnp.where(valid, indices, num_labels)
    sampled = jnp.zeros((num_labels + 1,), bool).at[targets].set(True)[:num_labels]
    positive = (labels != IGNORE) & (labels != bg_label)
    return sampled & positive, sampled & (labels == bg_label)

"""The one detection post-processor: class scores -> candidates -> class-aware NMS -> top K, padded.

Every detector of vision_jax ends here (Faster R-CNN's RoI heads, SSD, YOLO v1 and v3), so the
rules below hold for all of them. Per image (vmap over a batch), N predicted boxes and C classes:

  1. Boxes are class-agnostic [N, 4] (SSD, YOLO: one box scored for every class) or class-specific
     [N, C, 4] (R-CNN: one regressed box per class), (x1, y1, x2, y2) in input pixels, and are
     clipped to the image (height, width).
  2. The N x C (box, class) pairs are the candidates, flattened box-major (index n * C + c).
     A candidate whose score is <= score_threshold, whose score is not finite, whose clipped box
     has a NaN coordinate (an infinite one was clipped to the border), or whose box row is not
     `valid` (padding proposals) is dropped.
  3. Optionally the candidates are cut before NMS, so that its cost does not grow with N x C:
     `topk_per_class` keeps the k best boxes of each class (torchvision's SSD) and orders the
     candidates class-major, so equal scores of different classes go to the lower class;
     `pre_nms_topk` keeps the k best pairs overall (YOLO). Otherwise ties go to the lower flat
     index n * C + c. None keeps them all (detectron2's R-CNN).
  4. Class-aware greedy NMS (`batched_nms`: IoU > nms_threshold suppresses, same class only)
     keeps at most `max_detections` pairs, by decreasing score.

Scores are foreground class scores [N, C] with no background column. Where a detector's
classifier has one (softmax over C + 1), **background is the last column, index C**, detectron2's
convention, so that foreground class k is column k of the logits and of the scores:
`foreground_scores(logits)` gives softmax(logits)[..., :C].

Output: boxes float32 [K, 4], scores float32 [K], classes int32 [K] in 0..C-1, valid bool [K] with
K = max_detections, by decreasing score; padding rows are zeros, class 0 and valid False.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vision_jax.ops.boxes import clip_boxes
from vision_jax.ops.nms import batched_nms


def foreground_scores(logits: jax.Array) -> jax.Array:
    """Softmax over C + 1 logits with background last -> [..., C] foreground class probabilities."""
    if logits.shape[-1] < 2:
        raise ValueError(f"logits must be [..., C + 1] with C >= 1 (background last), got {logits.shape}")
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., :-1]


def multiclass_detections(
    boxes: jax.Array,
    scores: jax.Array,
    image_size: jax.Array,
    *,
    score_threshold: float,
    nms_threshold: float,
    max_detections: int,
    valid: jax.Array | None = None,
    pre_nms_topk: int | None = None,
    topk_per_class: int | None = None,
) -> dict[str, jax.Array]:
    """Detections of one image (module docstring).

    Args:
      boxes: [N, 4] class-agnostic or [N, C, 4] class-specific, xyxy input pixels.
      scores: [N, C] foreground class scores (no background column).
      image_size: [2] (height, width) the boxes are clipped to; may be traced.
      score_threshold, nms_threshold: floats, may be traced.
      max_detections: K, static.
      valid: [N] bool or None (all rows valid): rows to drop (e.g. padding proposals).
      pre_nms_topk / topk_per_class: static ints or None, at most one of them (step 3).
    Static under jit: `max_detections`, `pre_nms_topk`, `topk_per_class` (they fix output and
    candidate shapes).
    Returns:
      {'boxes' [K, 4], 'scores' [K], 'classes' [K] int32, 'valid' [K] bool}.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C] (one image), got shape {scores.shape}")
    num_boxes, num_classes = scores.shape
    if boxes.shape not in ((num_boxes, 4), (num_boxes, num_classes, 4)):
        raise ValueError(f"boxes must be [N, 4] or [N, C, 4] with N, C = {scores.shape}, got shape {boxes.shape}")
    if max_detections < 1:
        raise ValueError(f"max_detections={max_detections} must be >= 1")
    if pre_nms_topk is not None and topk_per_class is not None:
        raise ValueError("give pre_nms_topk or topk_per_class, not both")
    for name, k in (("pre_nms_topk", pre_nms_topk), ("topk_per_class", topk_per_class)):
        if k is not None and k < 1:
            raise ValueError(f"{name}={k} must be >= 1 or None")
    image_size = jnp.asarray(image_size, jnp.float32)
    boxes = clip_boxes(boxes.astype(jnp.float32), image_size[0], image_size[1])
    scores = scores.astype(jnp.float32)
    boxes = jnp.broadcast_to(boxes[:, None, :] if boxes.ndim == 2 else boxes, (num_boxes, num_classes, 4))
    usable = jnp.all(jnp.isfinite(boxes), -1) & jnp.isfinite(scores) & (scores > score_threshold)
    if valid is not None:
        usable &= jnp.asarray(valid, bool)[:, None]
    scores = jnp.where(usable, scores, -jnp.inf)
    if topk_per_class is not None:
        k = min(topk_per_class, num_boxes)
        top_scores, top_index = jax.lax.top_k(scores.T, k)  # [C, k], per class
        flat_index = (top_index * num_classes + jnp.arange(num_classes)[:, None]).reshape(-1)
        candidate_scores = top_scores.reshape(-1)
    elif pre_nms_topk is not None:
        candidate_scores, flat_index = jax.lax.top_k(scores.reshape(-1), min(pre_nms_topk, num_boxes * num_classes))
    else:
        candidate_scores, flat_index = scores.reshape(-1), jnp.arange(num_boxes * num_classes)
    candidate_boxes = boxes.reshape(-1, 4)[flat_index]
    candidate_classes = (flat_index % num_classes).astype(jnp.int32)
    keep, num_kept = batched_nms(
        candidate_boxes,
        candidate_scores,
        candidate_classes,
        nms_threshold,
        max_detections,
        score_threshold=score_threshold,
    )
    kept = jnp.arange(max_detections) < num_kept
    index = jnp.where(kept, keep, 0)
    return {
        "boxes": jnp.where(kept[:, None], candidate_boxes[index], 0.0),
        "scores": jnp.where(kept, candidate_scores[index], 0.0),
        "classes": jnp.where(kept, candidate_classes[index], 0),
        "valid": kept,
    }

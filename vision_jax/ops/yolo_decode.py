"""YOLO post-processing: class-specific scores -> per-class NMS -> top-k detections, static shapes.

Both YOLO versions end the same way: every predicted box b (N of them, xyxy input pixels) has a
class-specific score per class c (v1: confidence_b x P(c | object) of its cell; v3:
sigmoid(t_o) x sigmoid(t_c)). The N x C (box, class) pairs are the candidates:

  1. boxes are clipped to the image (height, width);
  2. candidates with score <= score_threshold, a non-finite score or box are dropped;
  3. the `pre_nms_topk` best candidates by score are kept (ties: lower flat index n * C + c first),
     so that NMS's cost does not grow with N x C (10647 x 80 at 416² on COCO);
  4. per-class greedy NMS (`batched_nms`: IoU > nms_threshold suppresses, same class only);
  5. at most `max_detections` survivors, by decreasing score, padded with zeros and valid=False.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from vision_jax.ops.boxes import clip_boxes
from vision_jax.ops.nms import batched_nms


def yolo_detections(
    boxes: jnp.ndarray,
    class_scores: jnp.ndarray,
    image_size: jnp.ndarray | Sequence[float],
    *,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Detections of one image (module docstring); vmap over a batch.

    Static under jit: `max_detections`, `pre_nms_topk`.

    Args:
      boxes: [N, 4] xyxy input pixels; class_scores: [N, C] in [0, 1];
      image_size: [2] (height, width) to clip to (may be traced).
      score_threshold, nms_threshold: may be traced. max_detections, pre_nms_topk: static ints.
    Returns:
      boxes float32 [K, 4], scores float32 [K], classes int32 [K] in 0..C-1, valid bool [K],
      K = max_detections, by decreasing score; padding rows are zeros / class 0 / invalid.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4] (one image), got shape {boxes.shape}")
    if class_scores.ndim != 2 or class_scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"class_scores must be [N, C] with N={boxes.shape[0]}, got shape {class_scores.shape}")
    if pre_nms_topk < 1 or max_detections < 1:
        raise ValueError(f"pre_nms_topk={pre_nms_topk} and max_detections={max_detections} must be >= 1")
    num_boxes, num_classes = class_scores.shape
    image_size = jnp.asarray(image_size, jnp.float32)
    boxes = clip_boxes(boxes.astype(jnp.float32), image_size[0], image_size[1])
    scores = class_scores.astype(jnp.float32)
    usable = jnp.all(jnp.isfinite(boxes), -1)[:, None] & jnp.isfinite(scores) & (scores > score_threshold)
    flat_scores = jnp.where(usable, scores, -jnp.inf).reshape(-1)
    topk = min(pre_nms_topk, num_boxes * num_classes)
    top_scores, top_index = jax.lax.top_k(flat_scores, topk)  # ties: lower index first
    top_boxes = boxes[top_index // num_classes]
    top_classes = (top_index % num_classes).astype(jnp.int32)
    keep, num_kept = batched_nms(
        top_boxes, top_scores, top_classes, nms_threshold, max_detections, score_threshold=score_threshold
    )
    valid = jnp.arange(max_detections) < num_kept
    safe = jnp.where(valid, keep, 0)
    return (
        jnp.where(valid[:, None], top_boxes[safe], 0.0),
        jnp.where(valid, top_scores[safe], 0.0),
        jnp.where(valid, top_classes[safe], 0),
        valid,
    )

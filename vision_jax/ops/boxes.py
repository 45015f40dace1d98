"""Box geometry: format conversion, areas, IoU family, clipping, masks, delta coding.

Conventions (shared by every function here):

* A box is 4 floats in the last axis. The default format is ``xyxy`` = (x1, y1, x2, y2) in
  absolute pixels of the network input, the torchvision/detectron2 order. Other formats:
  ``cxcywh`` = (centre x, centre y, width, height) and ``xywh`` = (x1, y1, width, height)
  (COCO json).
* Width is ``x2 - x1`` with no ``+ 1`` (torchvision, detectron2, pycocotools' boxes).
* A box with ``x2 <= x1`` or ``y2 <= y1`` (zero area or inverted) is *empty*: its area is 0,
  it intersects nothing, and every IoU-like ratio whose denominator is 0 (in practice below
  ~1e-16, see ``_safe_divide``) is defined as 0 instead of NaN. Gradients of these ratios stay
  finite (the double-``where`` trick).

Every function is pure ``jax.numpy``: it works under ``jit``, ``vmap`` and ``grad`` and keeps
the input dtype (float32 in the models).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp

BOX_FORMATS = ("xyxy", "cxcywh", "xywh")

# torchvision's BoxCoder clamps dw/dh at log(1000 / 16) so that exp() cannot overflow on
# wild regressions: a box grows at most 62.5x per decode.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_last_axis(boxes: jnp.ndarray, name: str) -> None:
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [..., 4]; got {boxes.shape}")


def _safe_divide(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
    """numerator / denominator where denominator > ~0, else 0; finite gradients everywhere.

    The derivative of n / d involves d^2, which underflows to 0 in float32 for d < ~1e-19 and
    turns the gradient into inf/NaN; denominators below 1e3 * sqrt(tiny) (~1e-16 in float32,
    far below any meaningful area in pixels^2) therefore count as 0.
    """
    dtype = jnp.result_type(numerator, denominator)
    smallest = 1e3 * float(jnp.finfo(dtype).tiny) ** 0.5 if jnp.issubdtype(dtype, jnp.floating) else 0
    positive = denominator > smallest
    safe_denominator = jnp.where(positive, denominator, 1.0)
    return jnp.where(positive, numerator / safe_denominator, 0.0)


# ----------------------------------------------------------------------------- conversions
def xyxy_to_cxcywh(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_xywh(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (x1, y1, w, h)."""
    x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def xywh_to_xyxy(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] (x1, y1, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    x1, y1, w, h = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([x1, y1, x1 + w, y1 + h], axis=-1)


_TO_XYXY = {"xyxy": lambda b: b, "cxcywh": cxcywh_to_xyxy, "xywh": xywh_to_xyxy}
_FROM_XYXY = {"xyxy": lambda b: b, "cxcywh": xyxy_to_cxcywh, "xywh": xyxy_to_xywh}


def box_convert(boxes: jnp.ndarray, in_fmt: str, out_fmt: str) -> jnp.ndarray:
    """Converts [..., 4] boxes between 'xyxy', 'cxcywh' and 'xywh' (torchvision's names).

    Static under jit: `in_fmt`, `out_fmt`.
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"{name}={fmt!r} is not one of {BOX_FORMATS}")
    boxes = jnp.asarray(boxes)
    _check_last_axis(boxes, "boxes")
    if in_fmt == out_fmt:
        return boxes
    return _FROM_XYXY[out_fmt](_TO_XYXY[in_fmt](boxes))


# ----------------------------------------------------------------------------- areas and IoU
def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] xyxy -> [...] area; empty (inverted) boxes have area 0."""
    boxes = jnp.asarray(boxes)
    _check_last_axis(boxes, "boxes")
    widths = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    heights = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return widths * heights


def _intersection_and_union(boxes1: jnp.ndarray, boxes2: jnp.ndarray):
    """Broadcast [..., 4] x [..., 4] -> (intersection, union), both [...]."""
    inter_w = jnp.maximum(
        jnp.minimum(boxes1[..., 2], boxes2[..., 2]) - jnp.maximum(boxes1[..., 0], boxes2[..., 0]), 0.0)
    inter_h = jnp.maximum(
        jnp.minimum(boxes1[..., 3], boxes2[..., 3]) - jnp.maximum(boxes1[..., 1], boxes2[..., 1]), 0.0)
    intersection = inter_w * inter_h
    union = box_area(boxes1) + box_area(boxes2) - intersection
    return intersection, union


def _enclosing_box(boxes1: jnp.ndarray, boxes2: jnp.ndarray):
    """Broadcast -> (x1, y1, x2, y2) of the smallest box enclosing both."""
    return (jnp.minimum(boxes1[..., 0], boxes2[..., 0]), jnp.minimum(boxes1[..., 1], boxes2[..., 1]),
            jnp.maximum(boxes1[..., 2], boxes2[..., 2]), jnp.maximum(boxes1[..., 3], boxes2[..., 3]))


def elementwise_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
    """IoU of broadcastable [..., 4] xyxy boxes -> [...]; 0 where the union is 0."""
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    _check_last_axis(boxes1, "boxes1")
    _check_last_axis(boxes2, "boxes2")
    intersection, union = _intersection_and_union(boxes1, boxes2)
    return _safe_divide(intersection, union)


def elementwise_generalized_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
    """GIoU (Rezatofighi et al. 2019) of broadcastable [..., 4] xyxy boxes -> [...] in [-1, 1].

    GIoU = IoU - (C - U) / C with C the area of the smallest enclosing box. Each ratio with a
    zero denominator is 0 (two empty boxes at one point have GIoU 0).
    """
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    _check_last_axis(boxes1, "boxes1")
    _check_last_axis(boxes2, "boxes2")
    intersection, union = _intersection_and_union(boxes1, boxes2)
    ex1, ey1, ex2, ey2 = _enclosing_box(boxes1, boxes2)
    enclosing_area = jnp.maximum(ex2 - ex1, 0.0) * jnp.maximum(ey2 - ey1, 0.0)
    return _safe_divide(intersection, union) - _safe_divide(enclosing_area - union, enclosing_area)


def elementwise_distance_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray,
                                 eps: float = 1e-7) -> jnp.ndarray:
    """DIoU (Zheng et al. 2020) of broadcastable [..., 4] xyxy boxes -> [...] in [-1, 1].

    DIoU = IoU - d^2 / (c^2 + eps) with d the distance of the centres and c the diagonal of the
    enclosing box; ``eps`` as in torchvision's ``distance_box_iou``. For proper boxes the centres
    lie inside the enclosing box, so d^2 / c^2 <= 1; inverted boxes can break that, and the
    penalty is clamped at 1 to keep DIoU in [-1, 1].
    """
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    _check_last_axis(boxes1, "boxes1")
    _check_last_axis(boxes2, "boxes2")
    intersection, union = _intersection_and_union(boxes1, boxes2)
    ex1, ey1, ex2, ey2 = _enclosing_box(boxes1, boxes2)
    diagonal_sq = (ex2 - ex1) ** 2 + (ey2 - ey1) ** 2
    centre_dx = (boxes1[..., 0] + boxes1[..., 2] - boxes2[..., 0] - boxes2[..., 2]) * 0.5
    centre_dy = (boxes1[..., 1] + boxes1[..., 3] - boxes2[..., 1] - boxes2[..., 3]) * 0.5
    centre_distance_sq = centre_dx ** 2 + centre_dy ** 2
    penalty = jnp.minimum(_safe_divide(centre_distance_sq, diagonal_sq + eps), 1.0)
    return _safe_divide(intersection, union) - penalty


def _pairwise(fn, boxes1, boxes2, **kwargs):
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    if boxes1.ndim != 2 or boxes2.ndim != 2 or boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ValueError(f"boxes1 and boxes2 must be [N, 4] and [M, 4]; got {boxes1.shape} "
                         f"and {boxes2.shape}")
    return fn(boxes1[:, None, :], boxes2[None, :, :], **kwargs)


def box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
    """Pairwise IoU: boxes1 [N, 4] xyxy, boxes2 [M, 4] xyxy -> [N, M] (0 where union is 0)."""
    return _pairwise(elementwise_box_iou, boxes1, boxes2)


def generalized_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
    """Pairwise GIoU: [N, 4] x [M, 4] xyxy -> [N, M]."""
    return _pairwise(elementwise_generalized_box_iou, boxes1, boxes2)


def distance_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray, eps: float = 1e-7) -> jnp.ndarray:
    """Pairwise DIoU: [N, 4] x [M, 4] xyxy -> [N, M]."""
    return _pairwise(elementwise_distance_box_iou, boxes1, boxes2, eps=eps)


def box_ioa(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
    """Pairwise intersection over the area of boxes2: [N, 4] x [M, 4] -> [N, M].

    Used for crowd regions: the fraction of each anchor/proposal (boxes2) covered by a crowd box
    (boxes1). 0 where boxes2 is empty.
    """
    boxes1, boxes2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    intersection, _ = _pairwise(_intersection_and_union, boxes1, boxes2)
    return _safe_divide(intersection, box_area(boxes2)[None, :])


# ----------------------------------------------------------------------------- clip and masks
def clip_boxes(boxes: jnp.ndarray, height, width) -> jnp.ndarray:
    """Clamps [..., 4] xyxy boxes to the image: x into [0, width], y into [0, height].

    ``height``/``width`` may be Python numbers or traced scalars (per-image sizes under vmap).
    """
    boxes = jnp.asarray(boxes)
    _check_last_axis(boxes, "boxes")
    x = jnp.clip(boxes[..., 0::2], 0, width)
    y = jnp.clip(boxes[..., 1::2], 0, height)
    return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def small_box_mask(boxes: jnp.ndarray, min_size: float) -> jnp.ndarray:
    """[..., 4] xyxy -> [...] bool, True where width < min_size or height < min_size.

    The complement of torchvision's ``remove_small_boxes`` keep-rule (w >= min and h >= min).
    NaN coordinates count as small.
    """
    boxes = jnp.asarray(boxes)
    _check_last_axis(boxes, "boxes")
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return ~((widths >= min_size) & (heights >= min_size))


def valid_box_mask(boxes: jnp.ndarray) -> jnp.ndarray:
    """[..., 4] xyxy -> [...] bool, True where width > 0 and height > 0 (NaN is invalid)."""
    boxes = jnp.asarray(boxes)
    _check_last_axis(boxes, "boxes")
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


# ----------------------------------------------------------------------------- delta coding
def _check_weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh); got {weights}")
    return tuple(weights)  # type: ignore[return-value]


def encode_boxes(reference_boxes: jnp.ndarray, proposals: jnp.ndarray,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 min_size: float = 1e-6) -> jnp.ndarray:
    """Regression targets that move ``proposals`` onto ``reference_boxes`` (torchvision BoxCoder).

    Args:
      reference_boxes: [..., 4] xyxy, the targets (ground truth matched to each proposal).
      proposals: [..., 4] xyxy, anchors or proposals (broadcastable with reference_boxes).
      weights: (wx, wy, ww, wh) multiplying (dx, dy, dw, dh); Faster R-CNN's box head uses
        (10, 10, 5, 5), the RPN (1, 1, 1, 1).
      min_size: widths and heights are floored at this value before dividing and taking logs,
        so that empty boxes give large but finite targets instead of inf/NaN. Boxes of sane size
        are unaffected (torchvision has no floor).

    Returns:
      [..., 4] deltas (dx, dy, dw, dh): dx = wx * (gx - px) / pw, dw = ww * log(gw / pw), with
      centres x1 + 0.5 * w and widths x2 - x1.
    """
    wx, wy, ww, wh = _check_weights(weights)
    reference_boxes, proposals = jnp.asarray(reference_boxes), jnp.asarray(proposals)
    _check_last_axis(reference_boxes, "reference_boxes")
    _check_last_axis(proposals, "proposals")
    proposal_w = jnp.maximum(proposals[..., 2] - proposals[..., 0], min_size)
    proposal_h = jnp.maximum(proposals[..., 3] - proposals[..., 1], min_size)
    target_w = reference_boxes[..., 2] - reference_boxes[..., 0]
    target_h = reference_boxes[..., 3] - reference_boxes[..., 1]
    # Centre offset as half the sum of corner offsets: differences of nearby coordinates are
    # exact in float32, whereas subtracting rounded centres loses ~1e-4 px far from the origin.
    centre_dx = 0.5 * ((reference_boxes[..., 0] - proposals[..., 0])
                       + (reference_boxes[..., 2] - proposals[..., 2]))
    centre_dy = 0.5 * ((reference_boxes[..., 1] - proposals[..., 1])
                       + (reference_boxes[..., 3] - proposals[..., 3]))
    dx = wx * centre_dx / proposal_w
    dy = wy * centre_dy / proposal_h
    dw = ww * jnp.log(jnp.maximum(target_w, min_size) / proposal_w)
    dh = wh * jnp.log(jnp.maximum(target_h, min_size) / proposal_h)
    return jnp.stack([dx, dy, dw, dh], axis=-1)


def decode_boxes(deltas: jnp.ndarray, boxes: jnp.ndarray,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clamp: float = DEFAULT_SCALE_CLAMP) -> jnp.ndarray:
    """Applies deltas to boxes (inverse of ``encode_boxes``; torchvision BoxCoder.decode_single).

    Args:
      deltas: [..., 4] (dx, dy, dw, dh), e.g. [N, 4] or [N, K, 4] for per-class regressions.
      boxes: [..., 4] xyxy anchors/proposals broadcastable with deltas ([N, 1, 4] for [N, K, 4]).
      weights: the (wx, wy, ww, wh) used when encoding.
      clamp: dw/weight and dh/weight are clamped from above at this value before exp().

    Returns:
      [..., 4] xyxy decoded boxes (not clipped to the image). NaN deltas give NaN boxes.
    """
    wx, wy, ww, wh = _check_weights(weights)
    deltas, boxes = jnp.asarray(deltas), jnp.asarray(boxes)
    _check_last_axis(deltas, "deltas")
    _check_last_axis(boxes, "boxes")
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    centre_x = boxes[..., 0] + 0.5 * widths
    centre_y = boxes[..., 1] + 0.5 * heights
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = jnp.minimum(deltas[..., 2] / ww, clamp)
    dh = jnp.minimum(deltas[..., 3] / wh, clamp)
    pred_cx = dx * widths + centre_x
    pred_cy = dy * heights + centre_y
    half_w = 0.5 * (jnp.exp(dw) * widths)
    half_h = 0.5 * (jnp.exp(dh) * heights)
    return jnp.stack([pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h], axis=-1)

"""Detection and segmentation losses: smooth L1, sigmoid focal, softmax cross-entropy, GIoU.

Every loss takes ``reduction`` in {'none', 'sum', 'mean'} where it is elementwise ('none' keeps
the input shape). Inputs must be finite; degenerate boxes (zero area, inverted) give finite
losses and finite gradients.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

REDUCTIONS = ("none", "sum", "mean")


def _reduce(loss: jnp.ndarray, reduction: str) -> jnp.ndarray:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    raise ValueError(f"reduction={reduction!r} is not one of {REDUCTIONS}")


def smooth_l1_loss(pred: jnp.ndarray, target: jnp.ndarray, beta: float = 1.0,
                   reduction: str = "none") -> jnp.ndarray:
    """Huber-like loss of fvcore/detectron2 (and torch's ``smooth_l1_loss``), elementwise.

    |x| < beta: 0.5 x^2 / beta, else |x| - 0.5 beta, with x = pred - target. beta < 1e-5 is plain
    L1 (detectron2's rule, which avoids dividing by ~0). Faster R-CNN uses beta = 1/9 in the RPN.

    Static under jit: `beta`, `reduction`.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    diff = jnp.abs(jnp.asarray(pred) - jnp.asarray(target))
    if beta < 1e-5:
        return _reduce(diff, reduction)
    loss = jnp.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def sigmoid_focal_loss(logits: jnp.ndarray, targets: jnp.ndarray, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: str = "none") -> jnp.ndarray:
    """RetinaNet focal loss (torchvision.ops.sigmoid_focal_loss semantics), elementwise.

    loss = alpha_t * (1 - p_t)^gamma * BCE(logits, targets), p = sigmoid(logits),
    p_t = p t + (1 - p)(1 - t), alpha_t = alpha t + (1 - alpha)(1 - t); alpha < 0 disables the
    alpha weighting. targets are in [0, 1] (soft targets allowed), same shape as logits.

    Static under jit: `alpha`, `gamma`, `reduction`.
    """
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets, logits.dtype)
    probs = jax.nn.sigmoid(logits)
    # Stable binary cross-entropy with logits: max(x, 0) - x t + log(1 + exp(-|x|)).
    bce = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    one_minus_p_t = 1.0 - (probs * targets + (1.0 - probs) * (1.0 - targets))
    if gamma == 0:
        loss = bce
    else:
        # Floor the base away from 0 so d/dx x^gamma stays finite for gamma < 1 when p saturates.
        base = jnp.maximum(one_minus_p_t, jnp.finfo(logits.dtype).tiny)
        loss = bce * base ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return _reduce(loss, reduction)


def softmax_cross_entropy_per_element(logits: jnp.ndarray, labels: jnp.ndarray,
                                      ignore_index: int = 255,
                                      weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Per-element weighted cross-entropy -w[y] log softmax(logits)[y]; 0 where ignored.

    Args:
      logits: [..., C] float. labels: [...] int class ids.
      ignore_index: label value that contributes nothing (void / padding pixels).
      weights: optional [C] per-class weights (torch's ``weight``).

    Labels outside [0, C) other than ignore_index are also ignored (they cannot be checked
    under jit); pass clean labels.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits [..., C] and labels [...] disagree: {logits.shape} vs {labels.shape}")
    num_classes = logits.shape[-1]
    used = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    safe_labels = jnp.where(used, labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    element_weights = _element_weights(safe_labels, used, weights, num_classes, logits.dtype)
    return jnp.where(used, nll * element_weights, 0.0)


def _element_weights(safe_labels, used, weights, num_classes, dtype):
    if weights is None:
        return used.astype(dtype)
    weights = jnp.asarray(weights, dtype)
    if weights.shape != (num_classes,):
        raise ValueError(f"weights must be [C]={num_classes}; got shape {weights.shape}")
    return jnp.where(used, weights[safe_labels], 0.0)


def softmax_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, ignore_index: int = 255,
                          weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Scalar mean cross-entropy over non-ignored elements (torch ``cross_entropy``, 'mean').

    sum_i w[y_i] nll_i / sum_i w[y_i] over elements whose label is not ignored. Returns 0 (not
    torch's NaN) when every element is ignored. Shapes as in
    ``softmax_cross_entropy_per_element``.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    per_element = softmax_cross_entropy_per_element(logits, labels, ignore_index, weights)
    num_classes = logits.shape[-1]
    used = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    total_weight = jnp.sum(_element_weights(jnp.where(used, labels, 0), used, weights,
                                            num_classes, logits.dtype))
    safe_total = jnp.where(total_weight > 0, total_weight, 1.0)
    return jnp.where(total_weight > 0, jnp.sum(per_element) / safe_total, 0.0)


def giou_loss(pred_boxes: jnp.ndarray, target_boxes: jnp.ndarray, reduction: str = "none",
              eps: float = 1e-7) -> jnp.ndarray:
    """1 - GIoU of matched [..., 4] xyxy box pairs (torchvision.ops.generalized_box_iou_loss).

    As torchvision: IoU = I / (U + eps), GIoU = IoU - (C - U) / (C + eps), C the enclosing area.
    Unlike torchvision, widths and heights are floored at 0, so an inverted box counts as empty
    instead of having a negative area. Returns [...] for 'none'; values in [0, 2].

    Static under jit: `reduction`.
    """
    pred_boxes, target_boxes = jnp.asarray(pred_boxes), jnp.asarray(target_boxes)
    if pred_boxes.shape[-1:] != (4,) or target_boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes must be [..., 4]; got {pred_boxes.shape} and {target_boxes.shape}")
    px1, py1, px2, py2 = jnp.moveaxis(pred_boxes, -1, 0)
    tx1, ty1, tx2, ty2 = jnp.moveaxis(target_boxes, -1, 0)
    pred_area = jnp.maximum(px2 - px1, 0.0) * jnp.maximum(py2 - py1, 0.0)
    target_area = jnp.maximum(tx2 - tx1, 0.0) * jnp.maximum(ty2 - ty1, 0.0)
    inter_w = jnp.maximum(jnp.minimum(px2, tx2) - jnp.maximum(px1, tx1), 0.0)
    inter_h = jnp.maximum(jnp.minimum(py2, ty2) - jnp.maximum(py1, ty1), 0.0)
    intersection = inter_w * inter_h
    union = pred_area + target_area - intersection
    enclosing_area = (jnp.maximum(jnp.maximum(px2, tx2) - jnp.minimum(px1, tx1), 0.0)
                      * jnp.maximum(jnp.maximum(py2, ty2) - jnp.minimum(py1, ty1), 0.0))
    giou = intersection / (union + eps) - (enclosing_area - union) / (enclosing_area + eps)
    return _reduce(1.0 - giou, reduction)

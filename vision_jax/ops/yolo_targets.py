"""YOLO v1 and v3 target assignment and losses, per image (vmap over the batch), static shapes.

Boxes are (x1, y1, x2, y2) in pixels of the network input (the canvas, `image_size` = (height,
width)); ground truth arrives padded: `gt_boxes [G, 4]`, `gt_classes [G]` int, `gt_valid [G]`,
`gt_is_crowd [G]`. A ground truth is *usable* (assigned to a predictor) when it is valid, not crowd
and has positive width and height; padding and crowd boxes are never assigned.

Collisions: when several usable ground truths land on the same slot (v1: the same cell; v3: the same
cell of the same prior), the one with the highest index in `gt_boxes` wins ("last wins", as when
darknet writes its truth buffer in order); the others get no predictor. The scatter-max that
implements it is deterministic under jit and vmap.

YOLO v1 (Redmon et al., 2016). The model outputs, per cell of the S x S grid, B boxes
(x, y, sqrt_w, sqrt_h) in [0, 1] — (x, y) the centre's offset inside the cell in cell units,
sqrt_w / sqrt_h the square roots of the width / height as fractions of the image —, B confidences and
C class probabilities. Each usable ground truth is assigned to the cell holding its centre; the
responsible predictor is the one of the B with the highest IoU with it (darknet's rule when every
IoU is 0, as at the start of training: the one with the smallest RMSE of (x, y, w, h) in image
fractions). Loss, summed over the image (the caller averages over the batch):

    lambda_coord * sum_resp [(x - x*)^2 + (y - y*)^2 + (sqrt_w - sqrt(w*))^2 + (sqrt_h - sqrt(h*))^2]
  + sum_resp (conf - c*)^2  +  lambda_noobj * sum_not_resp conf^2
  + sum_cells_with_object sum_c (p_c - onehot_c)^2

with c* = IoU(predicted box, ground truth) (no gradient through it) when `rescore` (the paper's
definition of confidence; darknet's `rescore=1`), else 1.

YOLO v3 (Redmon & Farhadi, 2018). The model outputs, per level l (coarsest first), per cell and
per prior a, raw (t_x, t_y, t_w, t_h, t_o, t_c1..t_cC); they are flattened level by level, then row,
column, prior: N = sum_l H_l W_l A_l predictions. Each usable ground truth goes to the single prior
(of all levels) whose (width, height) has the best IoU with its own (both centred), at the cell
holding its centre on that prior's level; with `prior_iou_threshold` (off by default) also to every
prior whose IoU exceeds it (AlexeyAB darknet's `iou_thresh`). Targets there: x* = c_x / stride - col,
y* likewise (in [0, 1)), w* = log(w / p_w), h* = log(h / p_h), class one-hot. Every other prediction is a negative,
except those whose decoded box has IoU > `ignore_threshold` with any valid ground truth (crowd
included): they are ignored by the objectness loss. Loss, summed over the image:

    box_weight * sum_assigned (2 - w h / (W H)) [BCE(t_x, x*) + BCE(t_y, y*) + (t_w - w*)^2 + (t_h - h*)^2]
  + objectness_weight * [sum_assigned BCE(t_o, 1) + sum_negatives BCE(t_o, 0)]
  + class_weight * sum_assigned sum_c BCE(t_c, onehot_c)            (multi-label sigmoid)

The box loss is the paper's coordinates loss with the original darknet scale 2 - w h that favours
small boxes, with BCE on the sigmoid offsets (their targets lie in [0, 1)) as in YOLOv3 ports.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.ops.boxes import DEFAULT_SCALE_CLAMP, box_iou, cxcywh_to_xyxy, xyxy_to_cxcywh


def _usable(gt_boxes, gt_valid, gt_is_crowd):
    wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
    usable = gt_valid.astype(bool) & jnp.all(wh > 0, axis=-1)
    if gt_is_crowd is not None:
        usable &= ~gt_is_crowd.astype(bool)
    return usable


def _last_owner(slot: jnp.ndarray, usable: jnp.ndarray, num_slots: int) -> jnp.ndarray:
    """[num_slots] int32: the highest ground-truth index g with slot[g] == s and usable[g], else -1."""
    index = jnp.where(usable, jnp.arange(slot.shape[0], dtype=jnp.int32), -1)
    return jnp.full((num_slots,), -1, jnp.int32).at[jnp.where(usable, slot, num_slots)].max(index, mode="drop")


def _check_gt(gt_boxes, gt_classes, gt_valid):
    if gt_boxes.ndim != 2 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"gt_boxes must be [G, 4] (one image; vmap over the batch), got shape {gt_boxes.shape}")
    if gt_classes.shape != gt_boxes.shape[:1] or gt_valid.shape != gt_boxes.shape[:1]:
        raise ValueError(f"gt_classes {gt_classes.shape} and gt_valid {gt_valid.shape} must be [G]={gt_boxes.shape[0]}")


# ----------------------------------------------------------------------------- YOLO v1
def yolo_v1_boxes_to_xyxy(boxes: jnp.ndarray, image_size: Sequence[float]) -> jnp.ndarray:
    """[S, S, B, 4] (x, y, sqrt_w, sqrt_h) (module docstring) -> [S, S, B, 4] xyxy input pixels.

    image_size: (height, width) of the canvas; cell (row i, column j) spans [j W/S, (j+1) W/S).

    Static under jit: `image_size`.
    """
    grid_h, grid_w = boxes.shape[0], boxes.shape[1]
    height, width = float(image_size[0]), float(image_size[1])
    cols = jnp.arange(grid_w, dtype=boxes.dtype)[None, :, None]
    rows = jnp.arange(grid_h, dtype=boxes.dtype)[:, None, None]
    centre_x = (cols + boxes[..., 0]) * (width / grid_w)
    centre_y = (rows + boxes[..., 1]) * (height / grid_h)
    box_w, box_h = jnp.square(boxes[..., 2]) * width, jnp.square(boxes[..., 3]) * height
    return cxcywh_to_xyxy(jnp.stack([centre_x, centre_y, box_w, box_h], axis=-1))


def yolo_v1_targets(
    pred_boxes: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_classes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    gt_is_crowd: jnp.ndarray | None,
    image_size: Sequence[float],
    num_classes: int,
) -> dict[str, jnp.ndarray]:
    """YOLO v1 assignment of one image (module docstring); no gradient flows through it.

    Static under jit: `image_size`, `num_classes`.

    Args:
      pred_boxes: [S, S, B, 4] the model's (x, y, sqrt_w, sqrt_h), used to pick the responsible predictor.
      gt_boxes [G, 4] xyxy pixels, gt_classes [G] int, gt_valid [G] bool, gt_is_crowd [G] bool or None.
      image_size: static (height, width) of the canvas.
    Returns:
      responsible [S, S, B] bool; box_targets [S, S, B, 4] (x*, y*, sqrt w*, sqrt h*), 0 elsewhere;
      iou [S, S, B] IoU of each responsible predictor's box with its ground truth, 0 elsewhere;
      object_cells [S, S] bool; class_targets [S, S, C] one-hot in object cells; gt_index [S, S] int32
      (the ground truth owning each cell, -1 for none).
    """
    _check_gt(gt_boxes, gt_classes, gt_valid)
    grid_h, grid_w, num_boxes = pred_boxes.shape[:3]
    height, width = float(image_size[0]), float(image_size[1])
    pred_boxes = jax.lax.stop_gradient(pred_boxes).astype(jnp.float32)
    gt_boxes = gt_boxes.astype(jnp.float32)
    centre = xyxy_to_cxcywh(gt_boxes)
    col = jnp.clip(jnp.floor(centre[:, 0] / (width / grid_w)), 0, grid_w - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(centre[:, 1] / (height / grid_h)), 0, grid_h - 1).astype(jnp.int32)
    owner = _last_owner(row * grid_w + col, _usable(gt_boxes, gt_valid, gt_is_crowd), grid_h * grid_w)
    owner = owner.reshape(grid_h, grid_w)
    object_cells = owner >= 0
    safe = jnp.maximum(owner, 0)

    cell_gt = gt_boxes[safe]  # [S, S, 4]
    cell_centre = centre[safe]
    cols = jnp.arange(grid_w, dtype=jnp.float32)[None, :]
    rows = jnp.arange(grid_h, dtype=jnp.float32)[:, None]
    target = jnp.stack(
        [
            cell_centre[..., 0] / (width / grid_w) - cols,
            cell_centre[..., 1] / (height / grid_h) - rows,
            jnp.sqrt(cell_centre[..., 2] / width),
            jnp.sqrt(cell_centre[..., 3] / height),
        ],
        axis=-1,
    )  # [S, S, 4]
    pred_xyxy = yolo_v1_boxes_to_xyxy(pred_boxes, (height, width))
    iou = jax.vmap(jax.vmap(lambda p, g: box_iou(p, g[None])[:, 0]))(pred_xyxy, cell_gt)  # [S, S, B]
    # darknet: when no predictor overlaps the truth, the one closest in (x, y, w, h) is responsible.
    pred_xywh = jnp.concatenate(
        [pred_boxes[..., :2] / jnp.asarray([grid_w, grid_h]), jnp.square(pred_boxes[..., 2:])], -1
    )
    true_xywh = jnp.concatenate([target[..., :2] / jnp.asarray([grid_w, grid_h]), jnp.square(target[..., 2:])], -1)
    rmse = jnp.sqrt(jnp.sum(jnp.square(pred_xywh - true_xywh[:, :, None, :]), -1))
    any_overlap = jnp.any(iou > 0, axis=-1, keepdims=True)
    best = jnp.argmax(jnp.where(any_overlap, iou, -rmse), axis=-1)
    responsible = object_cells[..., None] & (jnp.arange(num_boxes) == best[..., None])
    class_targets = jax.nn.one_hot(gt_classes[safe], num_classes, dtype=jnp.float32) * object_cells[..., None]
    return {
        "responsible": responsible,
        "box_targets": jnp.where(responsible[..., None], target[:, :, None, :], 0.0),
        "iou": jnp.where(responsible, iou, 0.0),
        "object_cells": object_cells,
        "class_targets": class_targets,
        "gt_index": owner,
    }


def yolo_v1_loss(
    boxes: jnp.ndarray,
    confidences: jnp.ndarray,
    class_probs: jnp.ndarray,
    targets: dict[str, jnp.ndarray],
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    rescore: bool = True,
) -> dict[str, jnp.ndarray]:
    """The paper's sum-squared loss of one image (module docstring), split in its four terms.

    Static under jit: `rescore`.

    Args:
      boxes: [S, S, B, 4] (x, y, sqrt_w, sqrt_h); confidences: [S, S, B]; class_probs: [S, S, C].
      targets: `yolo_v1_targets`'s output.
    Returns:
      {'coord', 'object', 'no_object', 'class'}: float32 scalars, summed over the image.
    """
    responsible = targets["responsible"]
    squared = jnp.sum(jnp.square(boxes.astype(jnp.float32) - targets["box_targets"]), -1)
    confidences = confidences.astype(jnp.float32)
    confidence_target = targets["iou"] if rescore else jnp.ones_like(targets["iou"])
    class_error = jnp.sum(jnp.square(class_probs.astype(jnp.float32) - targets["class_targets"]), -1)
    return {
        "coord": lambda_coord * jnp.sum(jnp.where(responsible, squared, 0.0)),
        "object": jnp.sum(jnp.where(responsible, jnp.square(confidences - confidence_target), 0.0)),
        "no_object": lambda_noobj * jnp.sum(jnp.where(responsible, 0.0, jnp.square(confidences))),
        "class": jnp.sum(jnp.where(targets["object_cells"], class_error, 0.0)),
    }


# ----------------------------------------------------------------------------- YOLO v3
def yolo_v3_layout(
    feature_shapes: Sequence[Sequence[int]], priors: Sequence[Sequence[float]], masks: Sequence[Sequence[int]]
) -> dict[str, np.ndarray]:
    """Static per-prediction tables for the flattened v3 outputs (NumPy, computed at trace time).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      feature_shapes: L (H_l, W_l), coarsest level first; priors: K (width, height) in pixels;
      masks: L tuples of prior indices used on each level.
    Returns:
      col, row [N] float32 cell of each prediction; prior_wh [N, 2] float32 pixels; prior [N] int32
      (index into priors); level [N] int32; offsets [L] int64 start of each level in the flat order;
      per prior: prior_level [K], prior_slot [K] (position in its level's mask); per level:
      level_shapes [L, 2] (H_l, W_l), level_num_priors [L].
    """
    if len(feature_shapes) != len(masks):
        raise ValueError(f"feature_shapes and masks need one entry per level; got {len(feature_shapes)}, {len(masks)}")
    priors_np = np.asarray(priors, np.float32)
    if priors_np.ndim != 2 or priors_np.shape[1] != 2 or np.any(priors_np <= 0):
        raise ValueError(f"priors must be positive (width, height) pairs; got {priors}")
    used = sorted(i for mask in masks for i in mask)
    if used != list(range(len(priors_np))):
        raise ValueError(f"masks {masks} must use every one of the {len(priors_np)} priors exactly once")
    tables = {"col": [], "row": [], "prior": [], "level": []}
    offsets, total = [], 0
    for level, ((grid_h, grid_w), mask) in enumerate(zip(feature_shapes, masks)):
        rows, cols, anchors = np.meshgrid(np.arange(grid_h), np.arange(grid_w), np.asarray(mask), indexing="ij")
        tables["row"].append(rows.reshape(-1))
        tables["col"].append(cols.reshape(-1))
        tables["prior"].append(anchors.reshape(-1))
        tables["level"].append(np.full(rows.size, level))
        offsets.append(total)
        total += rows.size
    out = {k: np.concatenate(v) for k, v in tables.items()}
    prior_level = np.zeros(len(priors_np), np.int32)
    prior_slot = np.zeros(len(priors_np), np.int32)
    for level, mask in enumerate(masks):
        for slot, prior_index in enumerate(mask):
            prior_level[prior_index], prior_slot[prior_index] = level, slot
    return {
        "col": out["col"].astype(np.float32),
        "row": out["row"].astype(np.float32),
        "prior": out["prior"].astype(np.int32),
        "level": out["level"].astype(np.int32),
        "prior_wh": priors_np[out["prior"]],
        "offsets": np.asarray(offsets, np.int64),
        "prior_level": prior_level,
        "prior_slot": prior_slot,
        "level_shapes": np.asarray(feature_shapes, np.int32).reshape(-1, 2),
        "level_num_priors": np.asarray([len(mask) for mask in masks], np.int32),
    }


def yolo_v3_decode(raw: jnp.ndarray, layout: dict[str, np.ndarray], strides: Sequence[float]) -> jnp.ndarray:
    """The one YOLO v3 box decoding: [..., N, >=4] raw (t_x, t_y, t_w, t_h, ...) -> [..., N, 4] xyxy
    input pixels, N in `layout`'s flat order; strides: one per level, coarsest first.

    b_x = (sigmoid(t_x) + col) * stride, b_w = p_w exp(t_w) (p_w in pixels); t_w and t_h are clamped
    at DEFAULT_SCALE_CLAMP = log(1000 / 16) (detectron2's exp clamp) so a wild output cannot overflow.

    Static under jit: `layout`, `strides` (`layout` is a dict: close over it, e.g. with
    functools.partial, as `static_argnames` needs hashable values).
    """
    stride = jnp.asarray(np.asarray(strides, np.float32)[layout["level"]])
    raw = raw.astype(jnp.float32)
    centre_x = (jax.nn.sigmoid(raw[..., 0]) + layout["col"]) * stride
    centre_y = (jax.nn.sigmoid(raw[..., 1]) + layout["row"]) * stride
    box_w = layout["prior_wh"][:, 0] * jnp.exp(jnp.minimum(raw[..., 2], DEFAULT_SCALE_CLAMP))
    box_h = layout["prior_wh"][:, 1] * jnp.exp(jnp.minimum(raw[..., 3], DEFAULT_SCALE_CLAMP))
    return cxcywh_to_xyxy(jnp.stack([centre_x, centre_y, box_w, box_h], axis=-1))


def yolo_v3_targets(
    pred_boxes: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_classes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    gt_is_crowd: jnp.ndarray | None,
    layout: dict[str, np.ndarray],
    priors: Sequence[Sequence[float]],
    strides: Sequence[float],
    image_size: Sequence[float],
    num_classes: int,
    ignore_threshold: float = 0.5,
    prior_iou_threshold: float | None = None,
) -> dict[str, jnp.ndarray]:
    """YOLO v3 assignment of one image (module docstring); no gradient flows through it.

    Static under jit: `layout`, `priors`, `strides`, `image_size`, `num_classes` (close over the
    `layout` dict, e.g. with functools.partial).

    Args:
      pred_boxes: [N, 4] decoded xyxy boxes (`yolo_v3_decode`), for the ignore mask.
      gt_*: one image's padded ground truth. layout: `yolo_v3_layout`'s tables (same priors).
      priors: K (width, height) pixels; strides: L strides; image_size: (height, width) of the canvas.
      prior_iou_threshold: None for the paper's single best prior; else every prior whose shape IoU
        with the ground truth exceeds it is assigned too (AlexeyAB darknet's `iou_thresh`, 0.213 in
        its YOLOv4 configs), each at the cell holding the centre on that prior's level.
    Returns:
      assigned [N] bool; gt_index [N] int32 (-1 where unassigned); box_targets [N, 4] (x*, y*, w*, h*);
      box_weights [N] (2 - w h / (W H) where assigned, else 0); class_targets [N, C] one-hot where
      assigned; ignored [N] bool (unassigned with max IoU > ignore_threshold); max_iou [N].
    """
    _check_gt(gt_boxes, gt_classes, gt_valid)
    num_predictions = layout["col"].shape[0]
    if pred_boxes.shape != (num_predictions, 4):
        raise ValueError(f"pred_boxes must be [N, 4] with N={num_predictions} from the layout, got {pred_boxes.shape}")
    priors_np = np.asarray(priors, np.float32)
    strides_np = np.asarray(strides, np.float32)
    gt_boxes = gt_boxes.astype(jnp.float32)
    centre = xyxy_to_cxcywh(gt_boxes)
    gt_wh = centre[:, 2:]
    inter = jnp.prod(jnp.minimum(gt_wh[:, None, :], priors_np[None]), -1)
    shape_iou = inter / (jnp.prod(gt_wh, -1)[:, None] + np.prod(priors_np, -1)[None] - inter)
    num_priors = priors_np.shape[0]
    best_prior = jnp.argmax(shape_iou, axis=-1)  # [G], first on ties
    chosen = jnp.arange(num_priors)[None, :] == best_prior[:, None]  # [G, K]
    if prior_iou_threshold is not None:
        chosen |= shape_iou > prior_iou_threshold

    # The slot of every (ground truth, prior) pair: static per-prior tables (level, slot within its
    # level's mask, grid, level offset) and the cell holding the centre on that prior's level.
    prior_level = layout["prior_level"]  # [K]
    grid_h, grid_w = layout["level_shapes"][prior_level, 0], layout["level_shapes"][prior_level, 1]
    stride = strides_np[prior_level]
    col = jnp.clip(jnp.floor(centre[:, :1] / stride), 0, grid_w - 1).astype(jnp.int32)  # [G, K]
    row = jnp.clip(jnp.floor(centre[:, 1:2] / stride), 0, grid_h - 1).astype(jnp.int32)
    flat = (
        layout["offsets"].astype(np.int32)[prior_level]
        + (row * grid_w + col) * layout["level_num_priors"][prior_level]
        + layout["prior_slot"]
    )
    usable = _usable(gt_boxes, gt_valid, gt_is_crowd)[:, None] & chosen
    # Pairs flattened ground truth major: the highest pair index on a slot is the highest gt index
    # (one gt never puts two priors on one slot), so "last wins" holds as for a single prior.
    pair_owner = _last_owner(flat.reshape(-1), usable.reshape(-1), num_predictions)
    owner = jnp.where(pair_owner >= 0, pair_owner // num_priors, -1)
    assigned = owner >= 0
    safe = jnp.maximum(owner, 0)

    stride_n = strides_np[layout["level"]]
    box_targets = jnp.stack(
        [
            centre[safe, 0] / stride_n - layout["col"],
            centre[safe, 1] / stride_n - layout["row"],
            jnp.log(jnp.maximum(gt_wh[safe, 0], 1e-6) / layout["prior_wh"][:, 0]),
            jnp.log(jnp.maximum(gt_wh[safe, 1], 1e-6) / layout["prior_wh"][:, 1]),
        ],
        axis=-1,
    )
    area_fraction = gt_wh[safe, 0] * gt_wh[safe, 1] / (float(image_size[0]) * float(image_size[1]))
    iou = box_iou(jax.lax.stop_gradient(pred_boxes).astype(jnp.float32), gt_boxes)  # [N, G]
    max_iou = jnp.max(jnp.where(gt_valid.astype(bool)[None, :], iou, 0.0), axis=-1)
    return {
        "assigned": assigned,
        "gt_index": owner,
        "box_targets": jnp.where(assigned[:, None], box_targets, 0.0),
        "box_weights": jnp.where(assigned, 2.0 - area_fraction, 0.0),
        "class_targets": jax.nn.one_hot(gt_classes[safe], num_classes, dtype=jnp.float32) * assigned[:, None],
        "ignored": ~assigned & (max_iou > ignore_threshold),
        "max_iou": max_iou,
    }


def _bce_with_logits(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Elementwise -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], stable for any x."""
    return jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def yolo_v3_loss(
    raw: jnp.ndarray,
    targets: dict[str, jnp.ndarray],
    box_weight: float = 1.0,
    objectness_weight: float = 1.0,
    class_weight: float = 1.0,
) -> dict[str, jnp.ndarray]:
    """YOLO v3 loss of one image (module docstring).

    Args:
      raw: [N, 5 + C] raw outputs (t_x, t_y, t_w, t_h, t_o, t_c...); targets: `yolo_v3_targets`'s output.
    Returns:
      {'box', 'objectness', 'class'}: float32 scalars, summed over the image.
    """
    raw = raw.astype(jnp.float32)
    assigned = targets["assigned"]
    box_targets = targets["box_targets"]
    box = (
        _bce_with_logits(raw[:, 0], box_targets[:, 0])
        + _bce_with_logits(raw[:, 1], box_targets[:, 1])
        + jnp.square(raw[:, 2] - box_targets[:, 2])
        + jnp.square(raw[:, 3] - box_targets[:, 3])
    )
    objectness = jnp.where(
        assigned,
        _bce_with_logits(raw[:, 4], 1.0),
        jnp.where(targets["ignored"], 0.0, _bce_with_logits(raw[:, 4], 0.0)),
    )
    classes = jnp.sum(_bce_with_logits(raw[:, 5:], targets["class_targets"]), -1)
    return {
        "box": box_weight * jnp.sum(jnp.where(assigned, targets["box_weights"] * box, 0.0)),
        "objectness": objectness_weight * jnp.sum(objectness),
        "class": class_weight * jnp.sum(jnp.where(assigned, classes, 0.0)),
    }

"""Anchor boxes: Faster R-CNN/RetinaNet grid anchors, SSD default boxes, YOLO priors.

All anchors depend only on static configuration (feature-map shapes, strides, sizes), so they
are computed once in NumPy and returned as constant ``jnp`` arrays; under ``jit`` they fold into
the compiled program. Output boxes are float32.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

ANCHOR_CONVENTIONS = ("torchvision", "detectron2")


def _as_pair(value, name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a (height, width) pair; got {value}")
    return float(value[0]), float(value[1])


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 convention: str = "torchvision") -> np.ndarray:
    """The A = len(sizes) * len(aspect_ratios) anchors of one grid cell, centred at (0, 0).

    An anchor of size s and aspect ratio r = h / w has area s^2: w = s / sqrt(r), h = s * sqrt(r).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      sizes: anchor sizes in input pixels (sqrt of the area), e.g. (32,) per FPN level.
      aspect_ratios: height / width ratios, e.g. (0.5, 1.0, 2.0).
      convention: 'torchvision' (AnchorGenerator: float32 arithmetic, ratio-major order
        [r0s0, r0s1, ..., r1s0, ...], corners rounded to integers with round-half-even) or
        'detectron2' (DefaultAnchorGenerator: size-major order [s0r0, s0r1, ...], not rounded).

    Returns:
      [A, 4] float32 xyxy.
    """
    if convention not in ANCHOR_CONVENTIONS:
        raise ValueError(f"convention={convention!r} is not one of {ANCHOR_CONVENTIONS}")
    if len(sizes) == 0 or len(aspect_ratios) == 0:
        raise ValueError(f"sizes and aspect_ratios must be non-empty; got {sizes}, {aspect_ratios}")
    if min(sizes) <= 0 or min(aspect_ratios) <= 0:
        raise ValueError(f"sizes and aspect_ratios must be positive; got {sizes}, {aspect_ratios}")
    if convention == "torchvision":
        scales = np.asarray(sizes, np.float32)
        height_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
        width_ratios = np.float32(1.0) / height_ratios
        widths = (width_ratios[:, None] * scales[None, :]).reshape(-1)
        heights = (height_ratios[:, None] * scales[None, :]).reshape(-1)
        anchors = np.stack([-widths, -heights, widths, heights], axis=1) / np.float32(2)
        return np.round(anchors).astype(np.float32)
    anchors = []
    for size in sizes:
        for ratio in aspect_ratios:
            width = math.sqrt(size * size / ratio)
            height = ratio * width
            anchors.append([-width / 2, -height / 2, width / 2, height / 2])
    return np.asarray(anchors, np.float32)


def _grid_anchors_np(feature_shape, stride, sizes, aspect_ratios, convention, offset):
    if len(feature_shape) != 2 or min(feature_shape) < 1:
        raise ValueError(f"feature_shape must be (height, width) >= 1; got {feature_shape}")
    stride_h, stride_w = _as_pair(stride, "stride")
    base = cell_anchors(sizes, aspect_ratios, convention)
    grid_h, grid_w = int(feature_shape[0]), int(feature_shape[1])
    shifts_x = ((np.arange(grid_w, dtype=np.float32) + np.float32(offset)) * np.float32(stride_w))
    shifts_y = ((np.arange(grid_h, dtype=np.float32) + np.float32(offset)) * np.float32(stride_h))
    shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


def grid_anchors(feature_shape: Sequence[int], stride, sizes: Sequence[float],
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 convention: str = "torchvision", offset: float = 0.0) -> jnp.ndarray:
    """Anchors of one feature level (torchvision AnchorGenerator / detectron2 default).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      feature_shape: (height, width) of the feature map.
      stride: input pixels per feature cell, a number or (stride_h, stride_w).
      sizes, aspect_ratios, convention: see ``cell_anchors``.
      offset: cell-centre offset in units of stride; 0.0 (both libraries' default) puts the
        anchor centre of cell (i, j) at (j * stride_w, i * stride_h), 0.5 at the cell centre.

    Returns:
      [height * width * A, 4] float32 xyxy in input pixels, location-major (row by row, then
      column) and anchor-minor, matching an RPN head output reshaped from [H, W, A, 4].
    """
    return jnp.asarray(_grid_anchors_np(feature_shape, stride, sizes, aspect_ratios, convention,
                                        offset))


def multilevel_anchors(feature_shapes: Sequence[Sequence[int]], strides: Sequence,
                       sizes_per_level: Sequence[Sequence[float]],
                       aspect_ratios: Sequence[float] | Sequence[Sequence[float]] = (0.5, 1.0, 2.0),
                       convention: str = "torchvision", offset: float = 0.0) -> jnp.ndarray:
    """Concatenated ``grid_anchors`` of every level, level by level (FPN P2..P6 order).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      feature_shapes: L (height, width) pairs.
      strides: L strides (numbers or (sh, sw) pairs).
      sizes_per_level: L tuples of sizes, e.g. ((32,), (64,), (128,), (256,), (512,)).
      aspect_ratios: one tuple shared by all levels, or L tuples.

    Returns:
      [sum_l H_l * W_l * A_l, 4] float32 xyxy.
    """
    num_levels = len(feature_shapes)
    if len(strides) != num_levels or len(sizes_per_level) != num_levels:
        raise ValueError(f"feature_shapes, strides and sizes_per_level must have one entry per "
                         f"level; got {len(feature_shapes)}, {len(strides)}, {len(sizes_per_level)}")
    if len(aspect_ratios) and isinstance(aspect_ratios[0], (int, float)):
        aspect_ratios = [aspect_ratios] * num_levels
    if len(aspect_ratios) != num_levels:
        raise ValueError(f"aspect_ratios must be one tuple or {num_levels}; got {aspect_ratios}")
    levels = [_grid_anchors_np(shape, stride, sizes, ratios, convention, offset)
              for shape, stride, sizes, ratios in zip(feature_shapes, strides, sizes_per_level,
                                                      aspect_ratios)]
    return jnp.asarray(np.concatenate(levels, axis=0))


# ----------------------------------------------------------------------------- SSD
def ssd_scales(num_levels: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
    """SSD's linearly spaced scales s_1..s_L plus the extra s_{L+1} = 1 (torchvision rule).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).
    """
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1; got {num_levels}")
    if num_levels == 1:
        return [min_ratio, max_ratio]
    step = (max_ratio - min_ratio) / (num_levels - 1.0)
    return [min_ratio + step * k for k in range(num_levels)] + [1.0]


def ssd_default_boxes(feature_shapes: Sequence[Sequence[int]], image_size: Sequence[int],
                      aspect_ratios_per_level: Sequence[Sequence[float]],
                      scales: Sequence[float] | None = None, min_ratio: float = 0.15,
                      max_ratio: float = 0.9, steps: Sequence[float] | None = None,
                      clip: bool = True, out_format: str = "xyxy") -> jnp.ndarray:
    """SSD default boxes (Liu et al. 2016), ordered like torchvision's DefaultBoxGenerator.

    Level k with scale s_k has, per location, the boxes (s_k, s_k), (s'_k, s'_k) with
    s'_k = sqrt(s_k s_{k+1}), then (s_k sqrt(r), s_k / sqrt(r)) and its transpose for each extra
    aspect ratio r in ``aspect_ratios_per_level[k]`` (so r = 2 gives 2:1 and 1:2). Sizes are
    fractions of the image side (width for x, height for y).

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      feature_shapes: L (height, width) pairs.
      image_size: (height, width) of the network input in pixels.
      aspect_ratios_per_level: L tuples of extra ratios, e.g. [[2], [2, 3], [2, 3], [2, 3], [2], [2]].
      scales: L + 1 scales (fractions of the image); default ``ssd_scales(L, min, max)``.
      steps: optional L strides in pixels; centres are (j + 0.5) * step / W. Default: the
        feature grid itself, centres (j + 0.5) / W_k.
      clip: clamp the normalised widths/heights into [0, 1] (torchvision's ``clip``).
      out_format: 'xyxy' (absolute input pixels, what the matcher and coder use) or
        'cxcywh_normalized' (torchvision's internal format, fractions of the image).

    Returns:
      [sum_k H_k W_k (2 + 2 len(ratios_k)), 4] float32, location-major then box within a level.
    """
    num_levels = len(feature_shapes)
    if len(aspect_ratios_per_level) != num_levels:
        raise ValueError(f"aspect_ratios_per_level needs {num_levels} entries; "
                         f"got {len(aspect_ratios_per_level)}")
    if out_format not in ("xyxy", "cxcywh_normalized"):
        raise ValueError(f"out_format={out_format!r} is not 'xyxy' or 'cxcywh_normalized'")
    scales = list(scales) if scales is not None else ssd_scales(num_levels, min_ratio, max_ratio)
    if len(scales) != num_levels + 1:
        raise ValueError(f"scales needs {num_levels + 1} entries (one per level + 1); got {scales}")
    if steps is not None and len(steps) != num_levels:
        raise ValueError(f"steps needs {num_levels} entries; got {steps}")
    image_h, image_w = float(image_size[0]), float(image_size[1])
    levels = []
    for k, (grid_h, grid_w) in enumerate(feature_shapes):
        s_k = scales[k]
        s_prime = math.sqrt(scales[k] * scales[k + 1])
        wh = [[s_k, s_k], [s_prime, s_prime]]
        for ratio in aspect_ratios_per_level[k]:
            if ratio <= 0:
                raise ValueError(f"aspect ratios must be positive; level {k} has {ratio}")
            w, h = s_k * math.sqrt(ratio), s_k / math.sqrt(ratio)
            wh += [[w, h], [h, w]]
        wh = np.asarray(wh, np.float32)
        if clip:
            wh = np.clip(wh, 0.0, 1.0)
        cells_x = (image_w / steps[k]) if steps is not None else grid_w
        cells_y = (image_h / steps[k]) if steps is not None else grid_h
        centre_x = ((np.arange(grid_w) + 0.5) / cells_x).astype(np.float32)
        centre_y = ((np.arange(grid_h) + 0.5) / cells_y).astype(np.float32)
        cy, cx = np.meshgrid(centre_y, centre_x, indexing="ij")
        centres = np.stack([cx.reshape(-1), cy.reshape(-1)], axis=1)
        centres = np.repeat(centres, len(wh), axis=0)
        sizes = np.tile(wh, (grid_h * grid_w, 1))
        levels.append(np.concatenate([centres, sizes], axis=1))
    boxes = np.concatenate(levels, axis=0).astype(np.float32)
    if out_format == "cxcywh_normalized":
        return jnp.asarray(boxes)
    image_scale = np.asarray([image_w, image_h], np.float32)
    xyxy = np.concatenate([(boxes[:, :2] - 0.5 * boxes[:, 2:]) * image_scale,
                           (boxes[:, :2] + 0.5 * boxes[:, 2:]) * image_scale], axis=1)
    return jnp.asarray(xyxy.astype(np.float32))


# ----------------------------------------------------------------------------- YOLO
# YOLOv3's k-means priors on COCO, (width, height) in pixels of a 416x416 input.
YOLOV3_COCO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119),
                       (116, 90), (156, 198), (373, 326))
# Which priors each output uses, from the coarsest (stride 32) to the finest (stride 8).
YOLOV3_MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
YOLOV3_STRIDES = (32, 16, 8)


def yolo_anchor_priors(anchors: Sequence[Sequence[float]] = YOLOV3_COCO_ANCHORS,
                       masks: Sequence[Sequence[int]] = YOLOV3_MASKS,
                       strides: Sequence[float] = YOLOV3_STRIDES,
                       in_grid_units: bool = True) -> list[jnp.ndarray]:
    """YOLOv3 priors per output level.

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).

    Args:
      anchors: all priors as (width, height) in input pixels.
      masks: per level, the indices of ``anchors`` used there (coarsest level first).
      strides: per level, input pixels per grid cell.
      in_grid_units: divide by the level's stride (YOLOv3 decodes b_w = p_w exp(t_w) in grid
        units, then multiplies by the stride); False keeps pixels.

    Returns:
      list of L arrays [len(mask_l), 2] float32 (width, height).
    """
    if len(masks) != len(strides):
        raise ValueError(f"masks and strides need one entry per level; got {masks}, {strides}")
    anchors_np = np.asarray(anchors, np.float32)
    if anchors_np.ndim != 2 or anchors_np.shape[1] != 2:
        raise ValueError(f"anchors must be (width, height) pairs; got shape {anchors_np.shape}")
    priors = []
    for mask, stride in zip(masks, strides):
        if max(mask) >= len(anchors_np) or min(mask) < 0:
            raise ValueError(f"mask {mask} indexes outside the {len(anchors_np)} anchors")
        level = anchors_np[list(mask)]
        priors.append(jnp.asarray(level / np.float32(stride) if in_grid_units else level))
    return priors


def yolo_grid_offsets(feature_shape: Sequence[int]) -> jnp.ndarray:
    """[H, W, 2] float32 (c_x, c_y) = (column, row) of each cell: b_x = (sigmoid(t_x) + c_x) * stride.

    Static under jit: every argument (it computes constants with NumPy: call it outside `jit`,
    or with concrete values).
    """
    grid_h, grid_w = int(feature_shape[0]), int(feature_shape[1])
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float32),
                             np.arange(grid_w, dtype=np.float32), indexing="ij")
    return jnp.asarray(np.stack([cols, rows], axis=-1))

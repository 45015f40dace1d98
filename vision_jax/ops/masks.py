"""Instance-mask ops of Mask R-CNN: paste predicted masks into images, build mask targets.

Boxes are (x1, y1, x2, y2) in image pixels with pixel (i, j) covering [j, j + 1) x [i, i + 1)
(its centre at j + 0.5), detectron2's convention.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from vision_jax.ops.roi import roi_align


def _paste_weights(lo: jax.Array, hi: jax.Array, mask_len: int, image_len: int) -> jax.Array:
    """Bilinear weights [K, image_len, mask_len] of one axis of detectron2's paste.

    Image pixel p is sampled at grid_sample's normalised coordinate
    g = (p + 0.5 - lo) / (hi - lo) * 2 - 1 with align_corners=False, i.e. at mask coordinate
    u = ((g + 1) * mask_len - 1) / 2; neighbours outside the mask read 0 (padding_mode='zeros').
    Pixels outside detectron2's CPU paste window [floor(lo) - 1, ceil(hi) + 1) get no weight,
    and so do all pixels of a box with non-positive or non-finite extent.
    """
    extent = hi - lo
    ok = (extent > 0) & jnp.isfinite(lo) & jnp.isfinite(hi)
    safe_lo = jnp.where(ok, lo, 0.0)[:, None]
    safe_extent = jnp.where(ok, extent, 1.0)[:, None]
    pixel = jnp.arange(image_len, dtype=jnp.float32)[None, :]
    g = (pixel + 0.5 - safe_lo) / safe_extent * 2 - 1
    u = ((g + 1) * mask_len - 1) / 2
    u0 = jnp.floor(u)
    frac = u - u0
    in_window = (pixel >= jnp.floor(safe_lo) - 1) & (pixel < jnp.ceil(safe_lo + safe_extent) + 1)
    keep = (in_window & ok[:, None]).astype(jnp.float32)
    cell = jnp.arange(mask_len, dtype=jnp.float32)[None, None, :]
    weights = jnp.where(cell == u0[..., None], 1.0 - frac[..., None], 0.0) + jnp.where(
        cell == u0[..., None] + 1, frac[..., None], 0.0
    )
    return weights * keep[..., None]


def paste_masks_in_image(
    masks: jax.Array, boxes: jax.Array, image_height: int, image_width: int, threshold: float | None = 0.5
) -> jax.Array:
    """Paste per-box mask probabilities into full images (detectron2's paste_masks_in_image).

    Every image pixel takes the bilinear sample of its box's mask at the pixel centre, as
    detectron2's `_do_paste_mask` does with F.grid_sample(align_corners=False, zero padding), so
    pixels near the box edge fade towards 0. Like detectron2 on CPU (one box at a time with
    skip_empty), only pixels in [floor(x1) - 1, ceil(x2) + 1) x [floor(y1) - 1, ceil(y2) + 1)
    are pasted; all others are 0. Boxes with x2 <= x1 or y2 <= y1 (or non-finite corners) give
    all-zero masks.

    Bilinear sampling is separable, so each mask is pasted as Wy [H, m] @ mask [m, m] @ Wx^T
    [m, W] with 2 non-zeros per row of Wy and Wx, computed at float32 precision.

    Static under jit: `image_height`, `image_width`.

    Args:
      masks: float [K, m, m] probabilities in [0, 1] (m x m mask-head output per box).
      boxes: float [K, 4], (x1, y1, x2, y2) in image pixels.
      image_height, image_width: static output size.
      threshold: binarise with `>= threshold` (detectron2), or None to return the soft masks.
    Returns:
      bool [K, image_height, image_width] when `threshold` is set, else float32.
    """
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"masks must be [K, m, m] (square), got shape {masks.shape}")
    if boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"boxes must be [K, 4]=({masks.shape[0]}, 4), got shape {boxes.shape}")
    if image_height <= 0 or image_width <= 0:
        raise ValueError(f"image size must be positive, got {image_height}x{image_width}")
    mask_len = masks.shape[1]
    boxes = boxes.astype(jnp.float32)
    weights_y = _paste_weights(boxes[:, 1], boxes[:, 3], mask_len, image_height)
    weights_x = _paste_weights(boxes[:, 0], boxes[:, 2], mask_len, image_width)
    pasted = jnp.einsum(
        "khi,kij,kwj->khw", weights_y, masks.astype(jnp.float32), weights_x, precision=lax.Precision.HIGHEST
    )
    return pasted if threshold is None else pasted >= threshold


def mask_targets(
    gt_masks: jax.Array,
    matched_gt_indices: jax.Array,
    rois: jax.Array,
    mask_size: int,
    threshold: float | None = 0.5,
    max_sampling_ratio: int | None = None,
) -> jax.Array:
    """Mask R-CNN mask targets: each RoI's matched ground-truth mask cropped and resized.

    detectron2's BitMasks.crop_and_resize: RoIAlign(mask_size, spatial_scale=1,
    sampling_ratio=0, aligned=True) of the 0/1 mask at the RoI, then `>= 0.5`. The adaptive
    sampling (ceil(roi_extent / mask_size) samples per bin) is capped at `max_sampling_ratio`,
    by default ceil(max(H, W) / mask_size): exact for every RoI that fits inside the mask's
    image; a larger RoI averages that many samples per bin instead.

    Static under jit: `mask_size`, `max_sampling_ratio`.

    Args:
      gt_masks: [G, H, W] 0/1 masks (bool, int or float) in image pixels.
      matched_gt_indices: int [K] in [0, G), the ground truth each RoI learns.
      rois: float [K, 4], (x1, y1, x2, y2) in image pixels.
      mask_size: side of the square target.
      threshold: binarise with `>= threshold` (detectron2 uses 0.5), or None for soft targets.
      max_sampling_ratio: static cap of the adaptive sampling grid (see above).
    Returns:
      float32 [K, mask_size, mask_size]: 0/1 targets, or soft values in [0, 1].
    """
    if gt_masks.ndim != 3:
        raise ValueError(f"gt_masks must be [G, H, W], got shape {gt_masks.shape}")
    if matched_gt_indices.shape != rois.shape[:1]:
        raise ValueError(f"matched_gt_indices must be [K]={rois.shape[:1]}, got shape {matched_gt_indices.shape}")
    if not isinstance(mask_size, int) or mask_size <= 0:
        raise ValueError(f"mask_size must be a positive int, got {mask_size!r}")
    if max_sampling_ratio is None:
        max_sampling_ratio = max(1, math.ceil(max(gt_masks.shape[1:]) / mask_size))
    features = gt_masks.astype(jnp.float32)[..., None]
    crops = roi_align(
        features,
        rois,
        matched_gt_indices,
        mask_size,
        spatial_scale=1.0,
        sampling_ratio=0,
        aligned=True,
        max_sampling_ratio=max_sampling_ratio,
    )[..., 0]
    return crops if threshold is None else (crops >= threshold).astype(jnp.float32)


def mask_targets_from_box_masks(
    box_masks: jax.Array,
    gt_boxes: jax.Array,
    matched_gt_indices: jax.Array,
    rois: jax.Array,
    mask_size: int,
    threshold: float | None = 0.5,
    max_sampling_ratio: int | None = None,
) -> jax.Array:
    """Mask R-CNN mask targets from ground-truth masks stored cropped to their boxes.

    `box_masks[g]` is ground truth g's mask resampled to K x K over its box `gt_boxes[g]` (cell
    (i, j) = the mask's coverage of the box's cell [x1 + j w / K, x1 + (j + 1) w / K) x ..., TF Model
    Garden's layout; vision_jax/data/instance_masks.py makes them). Each RoI is expressed in its
    matched box's cell coordinates, x' = (x - x1) K / w, and cropped there as `mask_targets` crops
    a full mask (aligned RoIAlign, adaptive sampling ceil(extent' / mask_size), then `>= threshold`),
    from the box mask with one ring of zero cells around it: outside its box a mask is 0 (it is
    exact where the mask lies inside its box, as a box made from the mask does); across the box's
    edge the value falls to 0 within half a cell, where the full mask's bilinear samples fall to 0
    within half a pixel. Compared with `mask_targets` on the full mask, the soft targets differ by
    the box mask's resampling, in bins within a pixel of the mask's edge only (measured in
    tests/detection/test_box_mask_targets.py: 0.07% - 0.4% of the binary targets at K = 112, M = 28).
    Outside the image they differ by design: torchvision's RoIAlign reads the border pixel up to a
    pixel beyond the image, the box mask reads 0 (proposals are clipped to the image, so training
    never samples there).

    The default cap of the adaptive sampling, ceil(2 K / mask_size), covers every RoI up to twice
    its box along each axis, which includes every RoI matched at IoU >= 0.5.

    Static under jit: `mask_size`, `max_sampling_ratio`.

    Args:
      box_masks: float [G, K, K] coverage in [0, 1] (uint8 0..255 from the pipeline divided by 255).
      gt_boxes: float [G, 4], (x1, y1, x2, y2) image pixels, the boxes the masks were cropped to.
      matched_gt_indices: int [R] in [0, G) (clipped into it).
      rois: float [R, 4], (x1, y1, x2, y2) image pixels.
      mask_size: M, side of the square targets.
      threshold: binarise with `>= threshold`, or None for soft targets.
      max_sampling_ratio: static cap of the adaptive sampling grid (above).
    Returns:
      float32 [R, mask_size, mask_size].
    """
    if box_masks.ndim != 3 or box_masks.shape[1] != box_masks.shape[2]:
        raise ValueError(f"box_masks must be [G, K, K], got shape {box_masks.shape}")
    if gt_boxes.shape != (box_masks.shape[0], 4):
        raise ValueError(f"gt_boxes must be [G, 4]=({box_masks.shape[0]}, 4), got shape {gt_boxes.shape}")
    if matched_gt_indices.shape != rois.shape[:1]:
        raise ValueError(f"matched_gt_indices must be [R]={rois.shape[:1]}, got shape {matched_gt_indices.shape}")
    if not isinstance(mask_size, int) or mask_size <= 0:
        raise ValueError(f"mask_size must be a positive int, got {mask_size!r}")
    side = box_masks.shape[1]
    if max_sampling_ratio is None:
        max_sampling_ratio = max(1, math.ceil(2 * side / mask_size))
    index = jnp.clip(matched_gt_indices, 0, box_masks.shape[0] - 1)
    box = gt_boxes.astype(jnp.float32)[index]
    # Padding rows and degenerate boxes have no extent: any finite scale will do, their RoIs are not used.
    extent = box[:, 2:] - box[:, :2]
    cells_per_pixel = side / jnp.where(extent > 0, extent, 1.0)  # [R, 2] (x, y)
    origin = box[:, :2]
    rois = rois.astype(jnp.float32)
    # +1: the ring of zero cells shifts the box's cell 0 to padded cell 1.
    top_left = (rois[:, :2] - origin) * cells_per_pixel + 1.0
    bottom_right = (rois[:, 2:] - origin) * cells_per_pixel + 1.0
    padded = jnp.pad(box_masks.astype(jnp.float32), ((0, 0), (1, 1), (1, 1)))[..., None]
    crops = roi_align(
        padded,
        jnp.concatenate([top_left, bottom_right], axis=1),
        index,
        mask_size,
        spatial_scale=1.0,
        sampling_ratio=0,
        aligned=True,
        max_sampling_ratio=max_sampling_ratio,
    )[..., 0]
    return crops if threshold is None else (crops >= threshold).astype(jnp.float32)

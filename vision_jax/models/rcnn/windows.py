"""The sliding-window detector's windows: their boxes in input pixels and their training labels.

Window geometry (exact, and the order every output of the detector follows). The image is resized by
each factor of the pyramid to (h', w') = (round(H * scale), round(W * scale)); a feature map of stride
s has cells (i, j), and cell (i, j) stands for the s x s tile [j*s, (j+1)*s) x [i*s, (i+1)*s) of the
resized image (the tile it subsamples, not its receptive field, which is wider and overlaps its
neighbours'). A window of kh x kw cells whose top-left cell is (i, j) is the union of its cells'
tiles, mapped back to the input by the resize factors (fx, fy) = (w' / W, h' / H):

    box = (j * s / fx,  i * s / fy,  (j + kw) * s / fx,  (i + kh) * s / fy)     (x1, y1, x2, y2)

for i in 0..h_f - kh, j in 0..w_f - kw (the windows lying wholly on the feature map, a VALID
convolution's positions). Windows are ordered scale-major, then window shape (in settings order),
then row i, then column j (row-major), which is how the convolutional scores flatten. A tile of the
last row or column may reach past the resized image when s does not divide h' (a ResNet's 'SAME'
padding rounds the map up); the detector clips boxes to the image.

Labels (`window_labels`): each window is matched to the valid, non-crowd ground-truth box it
overlaps most (IoU; ties to the lower index): IoU >= fg_iou_threshold -> that box's class;
IoU < bg_iou_threshold -> background (class C, the last); in between -> ignored (-1), so that a
window half on an object is neither pushed to name it nor to call it background. No low-quality
matches: a window is foreground only by its own overlap (R-CNN / OverFeat labelling). Windows whose
centre lies outside the image (padding of the canvas) and background windows covered by a crowd
box (Detectron's crowd rule: intersection >= 0.7 of the window's area) are ignored too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import vision_jax.ops as vops

IGNORE = -1


def window_boxes(
    feature_shape: Sequence[int],
    stride: int,
    window_shape: Sequence[int],
    resize_factors: Sequence[float],
) -> np.ndarray:
    """float32 [P, 4] boxes (x1, y1, x2, y2) in input pixels of every kh x kw window (module docstring).

    feature_shape: (h_f, w_f) cells of the feature map; stride: s, resized-image pixels per cell;
    window_shape: (kh, kw) cells; resize_factors: (fy, fx) = resized / input size per axis.
    P = (h_f - kh + 1) * (w_f - kw + 1), row-major. Computed with NumPy: shapes are static.
    """
    (height, width), (kh, kw), (fy, fx) = feature_shape, window_shape, resize_factors
    if kh > height or kw > width:
        raise ValueError(
            f"a window of {kh}x{kw} cells does not fit on a {height}x{width} feature map: choose smaller "
            "window_shapes, larger pyramid scales or a larger image"
        )
    rows, cols = np.meshgrid(np.arange(height - kh + 1), np.arange(width - kw + 1), indexing="ij")
    rows, cols = rows.reshape(-1).astype(np.float64), cols.reshape(-1).astype(np.float64)
    boxes = np.stack([cols * stride / fx, rows * stride / fy, (cols + kw) * stride / fx, (rows + kh) * stride / fy], -1)
    return boxes.astype(np.float32)


def window_valid(windows: jax.Array, image_size: jax.Array) -> jax.Array:
    """bool [N]: the window's centre lies inside the image of size (height, width) [2] (not on canvas
    padding). windows: float [N, 4] input pixels."""
    centre_x = 0.5 * (windows[:, 0] + windows[:, 2])
    centre_y = 0.5 * (windows[:, 1] + windows[:, 3])
    return (centre_x < image_size[1]) & (centre_y < image_size[0])


def window_labels(
    windows: jax.Array,
    valid: jax.Array,
    gt_boxes: jax.Array,
    gt_classes: jax.Array,
    gt_valid: jax.Array,
    gt_is_crowd: jax.Array,
    *,
    num_classes: int,
    fg_iou_threshold: float,
    bg_iou_threshold: float,
) -> tuple[jax.Array, jax.Array]:
    """Class label of each window of one image (module docstring).

    Args:
      windows: float [N, 4] input pixels; valid: bool [N] (False = ignored, e.g. on padding);
      gt_boxes: float [G, 4] input pixels; gt_classes: int [G] in 0..C-1; gt_valid, gt_is_crowd: bool [G].
    Static under jit: num_classes, fg_iou_threshold, bg_iou_threshold.
    Returns:
      labels: int32 [N]: 0..C-1 foreground class, C background, -1 ignored;
      matched_gt: int32 [N], the row of gt_boxes each window overlaps most (meaningful for foreground).
    """
    matched_gt, match = vops.match_boxes(
        gt_boxes,
        gt_valid,
        windows,
        gt_is_crowd,
        fg_threshold=fg_iou_threshold,
        bg_threshold=bg_iou_threshold,
        allow_low_quality_matches=False,
    )
    gt_classes = jnp.asarray(gt_classes, jnp.int32)
    foreground_class = gt_classes[matched_gt] if gt_classes.shape[0] else jnp.zeros_like(matched_gt)
    labels = jnp.where(match == 1, foreground_class, jnp.where(match == 0, num_classes, IGNORE))
    return jnp.where(valid, labels, IGNORE).astype(jnp.int32), matched_gt

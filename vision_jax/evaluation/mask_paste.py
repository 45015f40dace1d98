"""Instance masks pasted into an image of any size on the host, in NumPy (detectron2's paste).

Mask R-CNN predicts an M x M mask of probabilities on each detection's box; a picture or a COCO
result needs it in the image's own pixels, at the original resolution, with a size that differs
from image to image (a jitted paste would compile once per size). `paste_masks` follows
detectron2's `paste_masks_in_image` (CPU path, `_do_paste_mask` with F.grid_sample,
align_corners=False, zero padding), as `vision_jax.ops.paste_masks_in_image` does on device: image
pixel (r, c) takes the bilinear sample of the box's mask at the pixel's centre, only pixels of
[floor(x1) - 1, ceil(x2) + 1) x [floor(y1) - 1, ceil(y2) + 1) are pasted, a box without extent (or
with a non-finite corner) pastes nothing, and the result is `>= threshold` (0.5).

Boxes are (x1, y1, x2, y2) in the image's pixels, pixel (i, j) covering [j, j + 1) x [i, i + 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

DEFAULT_THRESHOLD = 0.5  # detectron2's paste threshold


def _axis_weights(start: int, stop: int, lo: float, hi: float, mask_len: int) -> np.ndarray:
    """float64 [stop - start, mask_len]: bilinear weights of image pixels start..stop-1 along one axis.

    Pixel p samples mask coordinate u = (p + 0.5 - lo) / (hi - lo) x mask_len - 0.5 (grid_sample's
    unnormalisation with align_corners=False); neighbours outside the mask weigh 0.
    """
    u = (np.arange(start, stop) + 0.5 - lo) / (hi - lo) * mask_len - 0.5
    low = np.floor(u).astype(np.int64)
    frac = u - low
    weights = np.zeros((stop - start, mask_len + 2))  # two spare columns catch the neighbours at -1 and mask_len
    rows = np.arange(stop - start)
    np.add.at(weights, (rows, np.clip(low, -1, mask_len) + 1), 1.0 - frac)
    np.add.at(weights, (rows, np.clip(low + 1, -1, mask_len) + 1), frac)
    return weights[:, 1:-1]


def paste_window(mask: np.ndarray, box, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The soft paste of one mask: ((rows, cols) slices of the image, float64 values there), or None
    when the box pastes nothing. mask: [m, m] probabilities; box: (x1, y1, x2, y2) image pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    col0, row0 = max(math.floor(x1) - 1, 0), max(math.floor(y1) - 1, 0)
    col1, row1 = min(math.ceil(x2) + 1, width), min(math.ceil(y2) + 1, height)
    if col1 <= col0 or row1 <= row0:
        return None
    mask = np.asarray(mask, np.float64)
    values = _axis_weights(row0, row1, y1, y2, mask.shape[0]) @ mask @ _axis_weights(col0, col1, x1, x2, mask.shape[1]).T
    return (slice(row0, row1), slice(col0, col1)), values


def paste_mask(mask: np.ndarray, box, height: int, width: int, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """bool [height, width]: one mask [m, m] pasted on its box (module docstring)."""
    out = np.zeros((height, width), bool)
    pasted = paste_window(mask, box, height, width)
    if pasted is not None:
        window, values = pasted
        out[window] = values >= threshold
    return out


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = DEFAULT_THRESHOLD) -> Iterator[np.ndarray]:  # fmt: skip
    """Yields bool [height, width] per detection: masks [K, m, m] on boxes [K, 4] (one at a time, so
    that K full-size masks are never held together)."""
    masks, boxes = np.asarray(masks), np.asarray(boxes)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2] or boxes.shape != (len(masks), 4):
        raise ValueError(f"paste_masks: masks must be [K, m, m] and boxes [K, 4], got {masks.shape} and {boxes.shape}")
    for mask, box in zip(masks, boxes):
        yield paste_mask(mask, box, height, width, threshold)

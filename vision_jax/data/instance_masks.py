"""Instance masks in the detection input pipeline: each mask cropped to its ground-truth box.

A mask the size of the canvas costs 100 instances x 1344 x 1344 bytes = 180 MB per COCO image; a
mask cropped to its box at a fixed K x K (K = `data.mask_crop_size`, 112 as in TF Model Garden's
Mask R-CNN) costs 100 x 112 x 112 bytes = 1.25 MB, whatever the image size. The model crops each
foreground RoI's 28 x 28 target out of the matched box mask (`vision_jax.ops.mask_targets_from_box_masks`).

`box_masks(masks, boxes, crop_size)` (TensorFlow, for tf.data): cell (i, j) of the crop of box
(x1, y1, x2, y2) is RoIAlign's value of the mask (torchvision semantics, aligned=True, a fixed
SAMPLES_PER_CELL x SAMPLES_PER_CELL bilinear samples per cell): the mask's coverage of the cell
[x1 + j w / K, x1 + (j + 1) w / K) x [y1 + i h / K, y1 + (i + 1) h / K), w = x2 - x1, h = y2 - y1,
stored as round(255 x coverage) in uint8 (1/510 quantisation). With boxes up to 2K mask pixels a
side the two samples per axis reach every pixel of a cell; larger boxes are sampled every
extent / 2K pixels, which moves the 0.5 level of a 28 x 28 target by a fraction of a target cell.

`data.*` keys (`add_instance_mask_defaults`): `data.with_masks` (False), `data.mask_crop_size`
(112), `data.mask_size` (0): in evaluation batches, masks stay canvas-aligned for an evaluator that
reads ground truth from the batches (Hm = Wm = mask_size, 0 = the canvas side).
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

SAMPLES_PER_CELL = 2  # bilinear samples per crop cell along each axis (RoIAlign's sampling_ratio)
COVERAGE_SCALE = 255  # uint8 value of a fully covered cell


def add_instance_mask_defaults(c: ml_collections.ConfigDict) -> None:
    """The instance-mask keys of the module docstring, with their defaults."""
    c.data.with_masks = False  # instance masks in the batch (Mask R-CNN)
    c.data.mask_crop_size = 112  # training: each mask cropped to its box, K x K uint8 coverage
    c.data.mask_size = 0  # evaluation: 0 = canvas-aligned masks at the canvas size; k = k x k over the canvas


def _axis_samples(start: tf.Tensor, extent: tf.Tensor, size: tf.Tensor, crop_size: int):
    """RoIAlign's sample points along one axis: low index, high index, their weights.

    start, extent: float32 [N] box start and length in mask pixels (pixel p covers [p, p + 1));
    size: int32 the mask's length. Returns int32 [N, K S] (low, high) and float32 [N, K S]
    (w_low, w_high) with torchvision's rules: a sample outside [-1, size] reads 0, one in [-1, 0)
    reads pixel 0, one past the last pixel centre reads the last pixel.
    """
    count = crop_size * SAMPLES_PER_CELL
    step = (tf.range(count, dtype=tf.float32) + 0.5) / count
    position = start[:, None] + step[None, :] * extent[:, None] - 0.5  # pixel-centre coordinates
    size_f = tf.cast(size, tf.float32)
    inside = tf.cast((position >= -1.0) & (position <= size_f), tf.float32)
    position = tf.maximum(position, 0.0)
    low = tf.minimum(tf.floor(position), size_f - 1)
    frac = tf.where(low >= size_f - 1, 0.0, position - low)
    high = tf.minimum(low + 1, size_f - 1)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * inside, frac * inside


def box_masks(masks: tf.Tensor, boxes: tf.Tensor, crop_size: int) -> tf.Tensor:
    """Each mask cropped to its box and resampled to crop_size x crop_size (module docstring).

    Bilinear sampling is separable, so the rows of every sample are gathered first ([N, K S, W],
    uint8 gathers, one float32 copy of K S rows per instance) and averaged per cell, then the columns.

    Args:
      masks: uint8 [N, H, W] 0/1 instance masks.
      boxes: float32 [N, 4] (x1, y1, x2, y2) in mask pixels, one per mask.
      crop_size: K, static.
    Returns:
      uint8 [N, K, K], round(255 x coverage).
    """
    height, width = tf.shape(masks)[1], tf.shape(masks)[2]
    boxes = tf.cast(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    y_low, y_high, wy_low, wy_high = _axis_samples(y1, y2 - y1, height, crop_size)
    x_low, x_high, wx_low, wx_high = _axis_samples(x1, x2 - x1, width, crop_size)
    gather_rows = lambda rows: tf.cast(tf.gather(masks, rows, axis=1, batch_dims=1), tf.float32)
    rows = wy_low[..., None] * gather_rows(y_low) + wy_high[..., None] * gather_rows(y_high)  # [N, K S, W]
    rows = tf.reduce_mean(tf.reshape(rows, [-1, crop_size, SAMPLES_PER_CELL, width]), axis=2)  # [N, K, W]
    gather_cols = lambda cols: tf.gather(rows, cols, axis=2, batch_dims=1)  # [N, K, K S]
    cells = wx_low[:, None, :] * gather_cols(x_low) + wx_high[:, None, :] * gather_cols(x_high)
    cells = tf.reduce_mean(tf.reshape(cells, [-1, crop_size, crop_size, SAMPLES_PER_CELL]), axis=3)
    return tf.cast(tf.round(tf.clip_by_value(cells, 0.0, 1.0) * COVERAGE_SCALE), tf.uint8)

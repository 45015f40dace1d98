"""SSD's training augmentations (Liu et al., 2016, section 2.2 and its Caffe data layer), in TF ops.

`ssd_augment(image, boxes, fields, seed)` applies, in this order (the paper's code):
1. photometric distortion (`photometric_distort`): brightness (+-32, p 0.5); then, with p 0.5
   each, either contrast first and saturation/hue after, or saturation/hue first and contrast
   last (Caffe's DistortImage "random order"); contrast multiplies pixel values by U[0.5, 1.5]
   (p 0.5), saturation by U[0.5, 1.5] (p 0.5), hue shifts by U[-18, 18] degrees (p 0.5); values
   are clamped to [0, 255] after each step, as Caffe's uint8 images saturate. The channel
   reordering of that layer is off in the paper's configuration and is left out.
2. expand / zoom out (`random_expand`, p 0.5): a canvas of ratio U[1, 4] times the image side,
   filled with the mean colour (ImageNet mean, which `normalize_image` maps to 0), the image
   placed at a uniform integer offset; boxes shift by the same offset.
3. min-IoU random crop (`min_iou_random_crop`): a mode drawn uniformly from (whole image, 0.1,
   0.3, 0.5, 0.7, 0.9); for a min IoU, up to 50 windows of side U[0.3, 1] times the image side
   with aspect ratio h / w in [0.5, 2] are drawn and the first with IoU >= min IoU with at least
   one box and at least one box centre strictly inside is used; if none qualifies, the whole
   image is kept (Caffe and ssd.pytorch draw again with another mode instead). Boxes whose
   centre is outside the window are dropped, the others are clipped to it.
The horizontal flip is the pipeline's own (`data.random_flip`, after the resize).

Conventions: image float32 [H, W, 3] in [0, 255]; boxes float32 [N, 4] (x1, y1, x2, y2) absolute
pixels; `fields`: dict of per-box tensors [N, ...] (classes, is_crowd, ...) filtered like the
boxes. Windows and offsets are whole pixels, so boxes stay exactly on the image content. All
randomness is stateless from `seed` (int64 [2]): the same seed gives the same result.
"""

from __future__ import annotations

import tensorflow as tf

from vision_jax.data.transforms import IMAGENET_MEAN_RGB

MIN_IOU_MODES = (-1.0, 0.1, 0.3, 0.5, 0.7, 0.9)  # -1: keep the whole image
CROP_TRIALS = 50
MIN_CROP_SCALE = 0.3
CROP_ASPECT_RANGE = (0.5, 2.0)
MAX_EXPAND_RATIO = 4.0
MEAN_PIXEL = tuple(255.0 * m for m in IMAGENET_MEAN_RGB)


def _coin(seed: tf.Tensor, probability: float = 0.5) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed=seed) < probability


def _uniform(seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high)


def photometric_distort(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Step 1 of the module docstring: float32 [H, W, 3] in [0, 255] -> same."""
    seeds = tf.unstack(tf.random.split(seed, 9))
    clamp = lambda x: tf.clip_by_value(x, 0.0, 255.0)

    def maybe(x, apply, coin_seed):
        return tf.cond(_coin(coin_seed), lambda: clamp(apply(x)), lambda: x)

    def contrast(x):
        return maybe(x, lambda y: y * _uniform(seeds[2], 0.5, 1.5), seeds[3])

    def saturation_hue(x):
        x = maybe(x, lambda y: 255.0 * tf.image.adjust_saturation(y / 255.0, _uniform(seeds[4], 0.5, 1.5)), seeds[5])
        return maybe(
            x, lambda y: 255.0 * tf.image.adjust_hue(y / 255.0, _uniform(seeds[6], -18.0, 18.0) / 360.0), seeds[7]
        )

    image = maybe(image, lambda y: y + _uniform(seeds[0], -32.0, 32.0), seeds[1])
    return tf.cond(_coin(seeds[8]), lambda: saturation_hue(contrast(image)), lambda: contrast(saturation_hue(image)))


def random_expand(
    image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, max_ratio: float = MAX_EXPAND_RATIO, probability: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """Step 2 of the module docstring. Returns (image [H', W', 3], boxes [N, 4] shifted)."""
    apply_seed, ratio_seed, offset_seed = tf.unstack(tf.random.split(seed, 3))
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    ratio = tf.random.stateless_uniform([], seed=ratio_seed, minval=1.0, maxval=max_ratio, dtype=tf.float64)
    new_height = tf.cast(tf.floor(tf.cast(height, tf.float64) * ratio), tf.int32)
    new_width = tf.cast(tf.floor(tf.cast(width, tf.float64) * ratio), tf.int32)
    u = tf.random.stateless_uniform([2], seed=offset_seed, dtype=tf.float64)
    top = tf.cast(tf.floor(u[0] * tf.cast(new_height - height + 1, tf.float64)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(new_width - width + 1, tf.float64)), tf.int32)
    top, left = tf.minimum(top, new_height - height), tf.minimum(left, new_width - width)

    def expand():
        mean = tf.constant(MEAN_PIXEL, tf.float32)
        paddings = [[top, new_height - height - top], [left, new_width - width - left], [0, 0]]
        canvas = tf.pad(image - mean, paddings) + mean  # padding 0 becomes the mean colour
        offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
        return canvas, boxes + offset

    return tf.cond(_coin(apply_seed, probability), expand, lambda: (image, boxes))


def _window_iou(windows: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """IoU of windows [T, 4] with boxes [N, 4] (xyxy) -> [T, N]."""
    w = windows[:, None, :]
    b = boxes[None, :, :]
    inter_w = tf.maximum(tf.minimum(w[..., 2], b[..., 2]) - tf.maximum(w[..., 0], b[..., 0]), 0.0)
    inter_h = tf.maximum(tf.minimum(w[..., 3], b[..., 3]) - tf.maximum(w[..., 1], b[..., 1]), 0.0)
    intersection = inter_w * inter_h
    area = lambda x: tf.maximum(x[..., 2] - x[..., 0], 0.0) * tf.maximum(x[..., 3] - x[..., 1], 0.0)
    union = area(w) + area(b) - intersection
    return tf.where(union > 0, intersection / tf.where(union > 0, union, 1.0), 0.0)


def centres_inside(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """[N] bool: box centre strictly inside window (x1, y1, x2, y2) [4] (ssd.pytorch's rule)."""
    cx = 0.5 * (boxes[:, 0] + boxes[:, 2])
    cy = 0.5 * (boxes[:, 1] + boxes[:, 3])
    return (cx > window[0]) & (cy > window[1]) & (cx < window[2]) & (cy < window[3])


def sample_crop_window(height: tf.Tensor, width: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The crop window of step 3: float32 [4] (x1, y1, x2, y2), whole pixels; the whole image when the
    mode says so or no trial qualifies."""
    mode_seed, trial_seed = tf.unstack(tf.random.split(seed, 2))
    mode = tf.random.stateless_uniform([], seed=mode_seed, minval=0, maxval=len(MIN_IOU_MODES), dtype=tf.int32)
    min_iou = tf.gather(tf.constant(MIN_IOU_MODES, tf.float32), mode)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    u = tf.random.stateless_uniform([CROP_TRIALS, 4], seed=trial_seed)
    crop_w = tf.floor(w * (MIN_CROP_SCALE + (1.0 - MIN_CROP_SCALE) * u[:, 0]))
    crop_h = tf.floor(h * (MIN_CROP_SCALE + (1.0 - MIN_CROP_SCALE) * u[:, 1]))
    left = tf.minimum(tf.floor(u[:, 2] * (w - crop_w + 1.0)), w - crop_w)
    top = tf.minimum(tf.floor(u[:, 3] * (h - crop_h + 1.0)), h - crop_h)
    windows = tf.stack([left, top, left + crop_w, top + crop_h], axis=1)  # [T, 4]
    aspect = crop_h / tf.maximum(crop_w, 1.0)
    shape_ok = (crop_w >= 1.0) & (crop_h >= 1.0) & (aspect >= CROP_ASPECT_RANGE[0]) & (aspect <= CROP_ASPECT_RANGE[1])
    iou_ok = tf.reduce_any(_window_iou(windows, boxes) >= min_iou, axis=1)
    cx = 0.5 * (boxes[None, :, 0] + boxes[None, :, 2])
    cy = 0.5 * (boxes[None, :, 1] + boxes[None, :, 3])
    inside = (cx > windows[:, 0:1]) & (cy > windows[:, 1:2]) & (cx < windows[:, 2:3]) & (cy < windows[:, 3:4])
    centre_ok = tf.reduce_any(inside, axis=1)  # [T]: the rule of centres_inside, for every window
    ok = shape_ok & iou_ok & centre_ok & (mode > 0)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    whole = tf.stack([0.0, 0.0, w, h])
    return tf.where(tf.reduce_any(ok), windows[first], whole)


def crop_to_window(image: tf.Tensor, boxes: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Crops image and boxes to window [4] (whole pixels). Returns (image, boxes in window
    coordinates clipped to it, keep [N] bool = centre inside, or all True for the whole image)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x1, y1, x2, y2 = tf.unstack(tf.cast(window, tf.int32))
    is_whole = tf.reduce_all(tf.stack([x1, y1, x2, y2]) == tf.stack([0, 0, width, height]))
    keep = centres_inside(boxes, window) | is_whole
    cropped = image[y1:y2, x1:x2]
    limits = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    shifted = tf.clip_by_value(boxes - tf.stack([window[0], window[1]] * 2), 0.0, limits)
    return cropped, shifted, keep


def min_iou_random_crop(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Step 3 of the module docstring. Returns (image, boxes of the kept boxes, keep [N] bool)."""
    window = sample_crop_window(tf.shape(image)[0], tf.shape(image)[1], boxes, seed)
    image, boxes, keep = crop_to_window(image, boxes, window)
    return image, tf.boolean_mask(boxes, keep), keep


def ssd_augment(
    image: tf.Tensor, boxes: tf.Tensor, fields: dict[str, tf.Tensor], seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """Steps 1-3 of the module docstring on image [H, W, 3] (0-255), boxes [N, 4] and per-box fields."""
    photometric_seed, expand_seed, crop_seed = tf.unstack(tf.random.split(tf.cast(seed, tf.int64), 3))
    image = photometric_distort(tf.cast(image, tf.float32), photometric_seed)
    image, boxes = random_expand(image, boxes, expand_seed)
    image, boxes, keep = min_iou_random_crop(image, boxes, crop_seed)
    return image, boxes, {key: tf.boolean_mask(values, keep) for key, values in fields.items()}

"""Transforms on an image and its boxes and masks together, in TensorFlow ops for tf.data map functions.

Conventions (shared with the rest of vision_jax):
- image: [H, W, 3], uint8 or float32 in [0, 255] until `normalize_image`.
- boxes: float32 [N, 4], (x1, y1, x2, y2) in absolute pixels; a pixel (row r, column c) covers
  [c, c+1) x [r, r+1), so an image of width W spans x in [0, W].
- masks: uint8 [N, H, W] instance masks, or a semantic map [H, W] (255 = ignore); every function that
  takes `masks` accepts either, because the last two axes are always (H, W).
- scale: float32 [2] = (new_height / old_height, new_width / old_width); a point (x, y) of the input
  is at (x * scale[1], y * scale[0]) in the output, and predictions map back by dividing.
- Randomness is stateless: each random transform takes a seed, int32/int64 [2] (the pipeline gives one
  per example and epoch; split it with `tf.random.split(seed, n)` for several transforms), so the same
  seed gives the same result on every run.
"""

from __future__ import annotations

import tensorflow as tf

# ImageNet channel statistics of images scaled to [0, 1] (the values torchvision's and most published
# ImageNet-trained backbones use): normalised = (pixel / 255 - mean) / std.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
SEGMENTATION_IGNORE_VALUE = 255


def normalize_image(image: tf.Tensor, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB) -> tf.Tensor:
    """[H, W, C] uint8 or float in [0, 255] -> float32 (image / 255 - mean) / std, per channel."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def resized_size(
    height: tf.Tensor,
    width: tf.Tensor,
    *,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    max_size: int | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Output (height, width), int32 scalars, of a resize.

    Either `size=(H, W)` (fixed, aspect ratio not kept) or `short_side` (keep the aspect ratio, the
    shorter side becomes short_side) with an optional `max_size` (then the longer side is at most
    max_size, the short side shrinking below short_side if needed). Sides round to the nearest integer
    (detectron2's ResizeShortestEdge rule).
    """
    if (size is None) == (short_side is None):
        raise ValueError(f"give exactly one of size={size} or short_side={short_side}")
    if size is not None:
        if max_size is not None:
            raise ValueError("max_size applies only with short_side")
        return tf.constant(size[0], tf.int32), tf.constant(size[1], tf.int32)
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = short_side / tf.minimum(h, w)
    if max_size is not None:
        scale = tf.minimum(scale, max_size / tf.maximum(h, w))
    return tf.cast(tf.floor(h * scale + 0.5), tf.int32), tf.cast(tf.floor(w * scale + 0.5), tf.int32)


def _scale_boxes(boxes: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """boxes [N, 4] (x1, y1, x2, y2) times scale (y, x)."""
    return boxes * tf.stack([scale[1], scale[0], scale[1], scale[0]])


def resize_image_and_boxes(
    image: tf.Tensor,
    boxes: tf.Tensor | None = None,
    *,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    max_size: int | None = None,
    method: str = "bilinear",
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
    """Resizes an image [H, W, C] (size rules as `resized_size`) and scales its boxes with it.

    The image is resampled with tf.image.resize (half-pixel centres, no antialiasing) and returned
    as float32 in the input's range. Returns (image, boxes or None, scale float32 [2] (y, x)).
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_height, new_width = resized_size(height, width, size=size, short_side=short_side, max_size=max_size)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method=method)
    scale = tf.cast(tf.stack([new_height / height, new_width / width]), tf.float32)
    if size is not None:
        resized.set_shape([size[0], size[1], image.shape[-1]])
    return resized, None if boxes is None else _scale_boxes(boxes, scale), scale


def resize_masks(masks: tf.Tensor, new_size) -> tf.Tensor:
    """Nearest-neighbour resize of masks [N, H, W] or a semantic map [H, W] to new_size (h, w).

    Output pixel (r, c) takes input pixel (floor((r + 0.5) * H / h), floor((c + 0.5) * W / w)): the
    input pixel under the output pixel's centre. Computed in float64 so the rule holds exactly; values
    (class ids, 255 = ignore) are never blended.
    """
    new_size = tf.cast(new_size, tf.int32)
    height, width = tf.shape(masks)[-2], tf.shape(masks)[-1]

    def source_index(out_len, in_len):
        centres = (tf.range(out_len, dtype=tf.float64) + 0.5) * tf.cast(in_len, tf.float64) / tf.cast(out_len, tf.float64)
        return tf.minimum(tf.cast(tf.floor(centres), tf.int32), in_len - 1)

    rows = source_index(new_size[0], height)
    cols = source_index(new_size[1], width)
    return tf.gather(tf.gather(masks, rows, axis=-2), cols, axis=-1)


def random_horizontal_flip(
    image: tf.Tensor,
    boxes: tf.Tensor | None,
    masks: tf.Tensor | None,
    seed: tf.Tensor,
    probability: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """Flips image [H, W, C], boxes [N, 4] and masks ([N, H, W] or [H, W]) left-right with `probability`.

    A flipped box is (W - x2, y1, W - x1, y2). Returns (image, boxes, masks), None where None was given.
    """
    flip = tf.random.stateless_uniform([], seed=seed) < probability
    width = tf.cast(tf.shape(image)[1], tf.float32)
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    if boxes is not None:
        x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
        flipped = tf.stack([width - x2, y1, width - x1, y2], axis=-1)
        boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
    if masks is not None:
        masks = tf.cond(flip, lambda: tf.reverse(masks, axis=[-1]), lambda: masks)
    return image, boxes, masks


def pad_to_size(image: tf.Tensor, size: tuple[int, int], pad_value=0) -> tf.Tensor:
    """Pads [H, W, C] or [H, W] at the bottom and right to size (h, w) with pad_value.

    Use pad_value=255 for a semantic map (ignore). The output has the static shape [h, w, ...].
    Fails (InvalidArgumentError naming the sizes) when the input is larger than `size`.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    check = tf.debugging.assert_less_equal(
        tf.stack([height, width]), tf.constant(size, tf.int32),
        message=f"pad_to_size: input larger than the target size {tuple(size)} (resize it first)",
    )
    with tf.control_dependencies([check]):
        paddings = [[0, size[0] - height], [0, size[1] - width]] + [[0, 0]] * (image.shape.rank - 2)
        padded = tf.pad(image, paddings, constant_values=tf.cast(pad_value, image.dtype))
    padded.set_shape(list(size) + image.shape.as_list()[2:])
    return padded


def pad_masks_to_size(masks: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Pads instance masks [N, H, W] with zeros at the bottom and right to [N, h, w]."""
    return tf.transpose(pad_to_size(tf.transpose(masks, [1, 2, 0]), size), [2, 0, 1])


def pad_instances(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    is_crowd: tf.Tensor,
    masks: tf.Tensor | None = None,
    *,
    max_instances: int,
) -> dict[str, tf.Tensor]:
    """Pads (or truncates to the first max_instances) a variable number N of instances to a fixed M.

    Returns boxes float32 [M, 4] (padding 0), classes int32 [M] (padding -1, never a real class),
    is_crowd bool [M] (padding False), masks uint8 [M, H, W] (padding 0, only when masks were given),
    valid bool [M] (True for the real instances) and num_instances int32 (N before truncation, so a
    caller can count what was dropped).
    """
    num = tf.shape(boxes)[0]
    kept = tf.minimum(num, max_instances)
    pad = max_instances - kept

    def fit(values, pad_value):
        values = values[:kept]
        paddings = [[0, pad]] + [[0, 0]] * (values.shape.rank - 1)
        out = tf.pad(values, paddings, constant_values=pad_value)
        out.set_shape([max_instances] + values.shape.as_list()[1:])
        return out

    result = {
        "boxes": fit(tf.cast(boxes, tf.float32), 0.0),
        "classes": fit(tf.cast(classes, tf.int32), -1),
        "is_crowd": fit(tf.cast(is_crowd, tf.bool), False),
        "valid": tf.range(max_instances) < kept,
        "num_instances": num,
    }
    if masks is not None:
        result["masks"] = fit(tf.cast(masks, tf.uint8), tf.constant(0, tf.uint8))
    return result


def random_scale(
    image: tf.Tensor,
    boxes: tf.Tensor | None,
    seed: tf.Tensor,
    *,
    min_scale: float,
    max_scale: float,
    method: str = "bilinear",
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
    """Resizes image [H, W, C] (and boxes) by a factor drawn uniformly from [min_scale, max_scale).

    Sides round to the nearest integer. Returns (image float32, boxes or None, scale float32 [2] (y, x),
    the exact per-axis factors). Resize masks to tf.shape(image)[:2] with `resize_masks`.
    """
    factor = tf.random.stateless_uniform([], seed=seed, minval=min_scale, maxval=max_scale, dtype=tf.float64)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_height = tf.maximum(1, tf.cast(tf.floor(tf.cast(height, tf.float64) * factor + 0.5), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.floor(tf.cast(width, tf.float64) * factor + 0.5), tf.int32))
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method=method)
    scale = tf.cast(tf.stack([new_height / height, new_width / width]), tf.float32)
    return resized, None if boxes is None else _scale_boxes(boxes, scale), scale


def random_crop(
    image: tf.Tensor,
    segmentation: tf.Tensor | None,
    seed: tf.Tensor,
    *,
    size: tuple[int, int],
    image_pad_value=0,
    ignore_value: int = SEGMENTATION_IGNORE_VALUE,
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
    """A random (h, w) = size window of image [H, W, C] and its semantic map [H, W] (segmentation training).

    A side shorter than the window is first padded at the bottom/right (image with image_pad_value,
    segmentation with ignore_value), as FCN/DeepLab training does. The window's top-left corner is
    uniform over all positions that keep it inside. Returns (image [h, w, C], segmentation [h, w] or
    None, offset int32 [2] = (top, left) of the window in the padded input).
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    padded_height, padded_width = tf.maximum(height, size[0]), tf.maximum(width, size[1])
    image = tf.pad(image, [[0, padded_height - height], [0, padded_width - width], [0, 0]],
                   constant_values=tf.cast(image_pad_value, image.dtype))
    max_offset = tf.stack([padded_height - size[0], padded_width - size[1]])
    # Uniform integer in [0, max_offset] per axis from one stateless draw in [0, 1).
    u = tf.random.stateless_uniform([2], seed=seed, dtype=tf.float64)
    offset = tf.minimum(tf.cast(tf.floor(u * tf.cast(max_offset + 1, tf.float64)), tf.int32), max_offset)
    cropped = image[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]
    cropped.set_shape([size[0], size[1], image.shape[-1]])
    if segmentation is not None:
        segmentation = tf.pad(segmentation, [[0, padded_height - height], [0, padded_width - width]],
                              constant_values=tf.cast(ignore_value, segmentation.dtype))
        segmentation = segmentation[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]
        segmentation.set_shape(list(size))
    return cropped, segmentation, offset

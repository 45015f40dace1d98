"""Joint image + semantic-map transforms for segmentation training and evaluation (TensorFlow ops).

Conventions are those of `vision_jax.data.transforms`: image [H, W, 3] (uint8 or float in [0, 255]
before normalisation), semantic map `segmentation` [H, W] of class ids with 255 = ignore, stateless
seeds int [2]. The image is resampled bilinearly (antialiased when shrinking), the map by nearest
neighbour (`transforms.resize_masks`: the input pixel under each output pixel's centre), so class ids
are never blended. Padding gives the image 0 *after* normalisation (the mean colour) and the map the
ignore value, so padded pixels cost nothing in the loss and count in no metric.

Pipelines (`size` = the square network input side S):

- `eval_transform`: normalise, resize keeping the aspect ratio so the longer side is S, pad at the
  bottom/right to S x S. Metrics are computed on this S x S map (the ground truth resized with the
  nearest rule), not at the original resolution.
- `train_transform`: normalise, resize like eval times a random factor in [min_scale, max_scale)
  (one resampling), take a random S x S window (padding first where a side is shorter), flip
  left-right with probability 1/2.
"""

from __future__ import annotations

import tensorflow as tf

from vision_jax.data import transforms

IGNORE_VALUE = transforms.SEGMENTATION_IGNORE_VALUE


def fit_size(height: tf.Tensor, width: tf.Tensor, size: int, factor: tf.Tensor | float = 1.0) -> tf.Tensor:
    """int32 [2] (h, w): the size keeping the aspect ratio whose longer side is size * factor, each side
    rounded to the nearest integer and at least 1."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.cast(size, tf.float64) * tf.cast(factor, tf.float64) / tf.maximum(h, w)
    return tf.maximum(1, tf.cast(tf.floor(tf.stack([h, w]) * scale + 0.5), tf.int32))


def resize_image_and_segmentation(
    image: tf.Tensor, segmentation: tf.Tensor, new_size: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes image [H, W, C] (bilinear, antialiased when shrinking; float32 out) and segmentation
    [H, W] (nearest, dtype kept) to new_size = (h, w)."""
    new_size = tf.cast(new_size, tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_size, method="bilinear", antialias=True)
    return resized, transforms.resize_masks(segmentation, new_size)


def eval_transform(image: tf.Tensor, segmentation: tf.Tensor, *, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(image uint8/float [H, W, 3], segmentation [H, W]) -> (float32 [S, S, 3] normalised,
    int32 [S, S] with 255 on the padding). See the module docstring."""
    image = transforms.normalize_image(image)
    shape = tf.shape(image)
    image, segmentation = resize_image_and_segmentation(image, segmentation, fit_size(shape[0], shape[1], size))
    image = transforms.pad_to_size(image, (size, size), pad_value=0.0)
    segmentation = transforms.pad_to_size(tf.cast(segmentation, tf.int32), (size, size), pad_value=IGNORE_VALUE)
    return image, segmentation


def train_transform(
    image: tf.Tensor,
    segmentation: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    min_scale: float = 1.0,
    max_scale: float = 1.0,
    flip: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Random scale, crop and flip of an (image, segmentation) pair; output shapes as `eval_transform`.

    The scale factor multiplies the eval-time fit (longer side = size), so 1.0 reproduces eval's
    resize; a factor > 1 zooms in (the window then sees part of the image), < 1 leaves padding.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale={min_scale} <= max_scale={max_scale}")
    scale_seed, crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image = transforms.normalize_image(image)
    shape = tf.shape(image)
    if max_scale > min_scale:
        factor = tf.random.stateless_uniform([], seed=scale_seed, minval=min_scale, maxval=max_scale, dtype=tf.float64)
    else:
        factor = tf.constant(min_scale, tf.float64)
    image, segmentation = resize_image_and_segmentation(image, segmentation, fit_size(shape[0], shape[1], size, factor))
    segmentation = tf.cast(segmentation, tf.int32)
    image, segmentation, _ = transforms.random_crop(
        image, segmentation, crop_seed, size=(size, size), image_pad_value=0.0, ignore_value=IGNORE_VALUE
    )
    if flip:
        image, _, segmentation = transforms.random_horizontal_flip(image, None, segmentation, flip_seed)
    return image, segmentation

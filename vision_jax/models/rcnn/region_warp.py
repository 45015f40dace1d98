"""R-CNN's region warp (Girshick et al. 2014, section 2.1 and appendix A): every proposal becomes a fixed
square crop, whatever its aspect ratio ("warp": anisotropic scaling), with context around it.

    crops = warp_regions(image, boxes, image_size, crop_size=227, context_padding=16.0)   # [P, 227, 227, 3]

Context. Before warping, the box is dilated about its centre by S / (S - 2p) (S = crop_size, p =
context_padding, both in crop pixels), so that the original box covers exactly the central S - 2p
pixels of the crop and p pixels of its surroundings lie on every side (the paper's p = 16 at S = 227;
`scaled_context_padding` gives 16 * S / 227 for other crop sizes).

Sampling. Crop pixel (i, j) has its centre at ((j + 0.5) / S, (i + 0.5) / S) of the dilated box, i.e. at
image point u = X1 + (j + 0.5) (X2 - X1) / S, v = Y1 + (i + 0.5) (Y2 - Y1) / S (continuous coordinates,
pixel k covers [k, k + 1)). A sample inside the image (0 <= u < width and 0 <= v < height) is the bilinear
interpolation of the pixel centres around it (u - 0.5, v - 0.5), with the nearest border pixel repeated
within half a pixel of the border (half-pixel centres, like tf.image.resize and OpenCV, no antialiasing).
A sample outside the image gets `fill_value`: the mean colour, as R-CNN pads with the image mean (0 for
images normalised by the dataset mean, as vision_jax's pipeline makes them).

R-CNN's MATLAB code (rcnn_im_crop.m) rounds the dilated box to whole pixels, crops its part inside the
image and resizes that part onto the crop; here every crop pixel samples the one continuous map above,
so a box's warp does not jump by a pixel as it moves by a fraction of one.

Plain JAX (jit, vmap; differentiable in the image), static shapes: boxes [P, 4] -> crops [P, S, S, C];
`warp_regions_of_images` takes regions of several images at once (region r in image image_index[r]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RCNN_CROP_SIZE = 227  # the paper's warped region side
RCNN_CONTEXT_PADDING = 16.0  # the paper's context, pixels of the 227 crop


def scaled_context_padding(crop_size: int) -> float:
    """The paper's 16 px of context at 227 scaled to a crop of side crop_size (pixels of the crop)."""
    return RCNN_CONTEXT_PADDING * crop_size / RCNN_CROP_SIZE


def check_warp_settings(crop_size: int, context_padding: float) -> None:
    """Raises ValueError unless crop_size >= 1 and 0 <= context_padding < crop_size / 2."""
    if int(crop_size) != crop_size or crop_size < 1:
        raise ValueError(f"crop_size={crop_size} must be a positive integer")
    if not 0.0 <= context_padding < crop_size / 2:
        raise ValueError(f"context_padding={context_padding} must be in [0, crop_size / 2 = {crop_size / 2})")


def dilate_for_context(boxes: jax.Array, crop_size: int, context_padding: float) -> jax.Array:
    """[..., 4] xyxy -> [..., 4] xyxy scaled about the centre by S / (S - 2p) (module docstring)."""
    check_warp_settings(crop_size, context_padding)
    scale = crop_size / (crop_size - 2.0 * context_padding)
    boxes = jnp.asarray(boxes)
    centres = (boxes[..., :2] + boxes[..., 2:]) * 0.5
    half_sides = (boxes[..., 2:] - boxes[..., :2]) * (0.5 * scale)
    return jnp.concatenate([centres - half_sides, centres + half_sides], axis=-1)


def _axis_samples(start: jax.Array, end: jax.Array, crop_size: int, extent: jax.Array):
    """Sample positions along one axis for boxes [P] spanning [start, end] in images of `extent` [P] pixels:
    (low index [P, S] int32, high index [P, S], weight of high [P, S], inside [P, S] bool)."""
    steps = (jnp.arange(crop_size, dtype=jnp.float32) + 0.5) / crop_size
    points = start[:, None] + steps[None, :] * (end - start)[:, None]  # continuous image coordinates
    extent = extent[:, None]
    inside = (points >= 0.0) & (points < extent)
    centred = points - 0.5  # in pixel-centre coordinates
    low = jnp.floor(centred)
    weight = centred - low
    last = jnp.maximum(extent - 1.0, 0.0)
    low_index = jnp.clip(low, 0.0, last).astype(jnp.int32)
    high_index = jnp.clip(low + 1.0, 0.0, last).astype(jnp.int32)
    return low_index, high_index, weight, inside


def warp_regions(
    image: jax.Array,
    boxes: jax.Array,
    image_size: jax.Array | None = None,
    *,
    crop_size: int,
    context_padding: float,
    fill_value: jax.Array | float = 0.0,
) -> jax.Array:
    """R-CNN's warped regions of one image (module docstring).

    Args:
      image: float [H, W, C] (a padded canvas is fine: `image_size` says where the image ends).
      boxes: float [P, 4] (x1, y1, x2, y2) in pixels of `image`.
      image_size: [2] (height, width) of the valid image at the top left of the canvas; may be traced.
        None = the whole canvas.
      crop_size: S, static. context_padding: p in crop pixels, static, 0 <= p < S / 2.
      fill_value: scalar or [C], the colour of samples outside the image (the mean colour).
    Static under jit: `crop_size`, `context_padding`.
    Returns:
      float32 [P, S, S, C].
    """
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    sizes = None if image_size is None else jnp.asarray(image_size, jnp.float32)[None]
    boxes = jnp.asarray(boxes, jnp.float32)
    return warp_regions_of_images(image[None], jnp.zeros(boxes.shape[:1], jnp.int32), boxes, sizes,
                                  crop_size=crop_size, context_padding=context_padding, fill_value=fill_value)


def warp_regions_of_images(
    images: jax.Array,
    image_index: jax.Array,
    boxes: jax.Array,
    image_sizes: jax.Array | None = None,
    *,
    crop_size: int,
    context_padding: float,
    fill_value: jax.Array | float = 0.0,
) -> jax.Array:
    """`warp_regions` for regions of several images: region r is boxes[r] in images[image_index[r]].

    Args:
      images: float [B, H, W, C]; image_index: int [R] in 0..B-1; boxes: float [R, 4] (x1, y1, x2, y2);
      image_sizes: [B, 2] (height, width) of each valid image, or None (whole canvases).
    Static under jit: `crop_size`, `context_padding`.
    Returns:
      float32 [R, S, S, C]. Memory: an intermediate of R x S x W x C floats (rows first).
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    boxes = jnp.asarray(boxes, jnp.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [R, 4], got shape {boxes.shape}")
    image_index = jnp.asarray(image_index, jnp.int32)
    if image_index.shape != boxes.shape[:1]:
        raise ValueError(f"image_index must be [R]={boxes.shape[:1]}, got shape {image_index.shape}")
    if image_sizes is None:
        image_sizes = jnp.broadcast_to(jnp.asarray(images.shape[1:3], jnp.float32), (images.shape[0], 2))
    sizes = jnp.asarray(image_sizes, jnp.float32)[image_index]  # [R, 2]
    region = dilate_for_context(boxes, crop_size, context_padding)
    y_low, y_high, y_weight, y_inside = _axis_samples(region[:, 1], region[:, 3], crop_size, sizes[:, 0])
    x_low, x_high, x_weight, x_inside = _axis_samples(region[:, 0], region[:, 2], crop_size, sizes[:, 1])
    # Separable bilinear interpolation: rows first ([R, S, W, C]), then columns ([R, S, S, C]).
    owner = image_index[:, None]
    rows = images[owner, y_low] * (1.0 - y_weight)[..., None, None] + images[owner, y_high] * y_weight[..., None, None]
    take_columns = jax.vmap(lambda r, index: r[:, index])  # [S, W, C], [S] -> [S, S, C]
    crops = take_columns(rows, x_low) * (1.0 - x_weight)[:, None, :, None] + \
        take_columns(rows, x_high) * x_weight[:, None, :, None]
    inside = y_inside[:, :, None] & x_inside[:, None, :]
    fill = jnp.broadcast_to(jnp.asarray(fill_value, jnp.float32), (images.shape[-1],))
    return jnp.where(inside[..., None], crops, fill)

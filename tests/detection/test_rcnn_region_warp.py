"""R-CNN's region warp (vision_jax/models/rcnn/region_warp.py) against a float64 NumPy reference written
from the paper's description: dilate the box so that p pixels of context surround it in the S x S crop,
warp anisotropically, bilinear at half-pixel centres, the mean colour outside the image."""

import jax
import numpy as np
import pytest

from vision_jax.models.rcnn.region_warp import (
    dilate_for_context,
    scaled_context_padding,
    warp_regions,
    warp_regions_of_images,
)


def reference_warp(image, boxes, image_size, crop_size, padding, fill):
    """float64, one pixel at a time."""
    height, width = image_size
    crops = np.zeros((len(boxes), crop_size, crop_size, image.shape[-1]))
    for n, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        # The box must cover the crop's central S - 2p pixels: the dilated box is S / (S - 2p) times larger.
        grow = crop_size / (crop_size - 2 * padding)
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * grow, (y2 - y1) / 2 * grow
        for i in range(crop_size):
            for j in range(crop_size):
                u = cx - half_w + (j + 0.5) / crop_size * 2 * half_w
                v = cy - half_h + (i + 0.5) / crop_size * 2 * half_h
                if not (0 <= u < width and 0 <= v < height):
                    crops[n, i, j] = fill
                    continue
                x, y = u - 0.5, v - 0.5
                xa, ya = int(np.floor(x)), int(np.floor(y))
                fx, fy = x - xa, y - ya
                clamp_x = lambda k: min(max(k, 0), width - 1)
                clamp_y = lambda k: min(max(k, 0), height - 1)
                top = (1 - fx) * image[clamp_y(ya), clamp_x(xa)] + fx * image[clamp_y(ya), clamp_x(xa + 1)]
                bottom = (1 - fx) * image[clamp_y(ya + 1), clamp_x(xa)] + fx * image[clamp_y(ya + 1), clamp_x(xa + 1)]
                crops[n, i, j] = (1 - fy) * top + fy * bottom
    return crops


def random_boxes(rng, count, height, width):
    """Boxes of every kind: inside, crossing a border, thin, partly or wholly outside the image."""
    x1 = rng.uniform(-0.3 * width, width, count)
    y1 = rng.uniform(-0.3 * height, height, count)
    w = rng.uniform(0.5, 0.8 * width, count)
    h = rng.uniform(0.5, 0.8 * height, count)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


@pytest.mark.parametrize("crop_size", [9, 16])
def test_warp_matches_float64_reference_with_context_and_mean_fill(rng, seed, crop_size):
    canvas, height, width = 24, int(rng.integers(10, 25)), int(rng.integers(10, 25))
    image = np.zeros((canvas, canvas, 3), np.float32)
    image[:height, :width] = rng.normal(0, 1, (height, width, 3))
    image[height:] = 50.0  # canvas padding must never leak into a crop
    image[:, width:] = 50.0
    boxes = random_boxes(rng, 12, height, width)
    padding = float(rng.uniform(0, crop_size / 2 - 0.5))
    fill = rng.normal(0, 1, 3).astype(np.float32)
    warp = jax.jit(warp_regions, static_argnames=("crop_size", "context_padding"))
    crops = np.asarray(warp(image, boxes, np.array([height, width], np.float32), crop_size=crop_size,
                            context_padding=padding, fill_value=fill))
    expected = reference_warp(image.astype(np.float64), boxes, (height, width), crop_size, padding, fill)
    assert crops.shape == (12, crop_size, crop_size, 3)
    np.testing.assert_allclose(crops, expected, atol=1e-4, err_msg=f"seed={seed}")


def test_box_covers_the_central_pixels_and_context_lies_around_it(rng, seed):
    """On a linear ramp (bilinear sampling is exact there) crop column j reads the image at
    u = x1 - p w / (S - 2p) + (j + 0.5) w / (S - 2p): the box's own edges at crop positions p and S - p."""
    size, crop, padding = 64, 40, 4.0
    ramp = np.broadcast_to(np.arange(size, dtype=np.float32)[None, :, None] + 0.5, (size, size, 1))
    x1, y1 = rng.uniform(12, 20, 2)
    box = np.array([[x1, y1, x1 + rng.uniform(10, 25), y1 + rng.uniform(10, 25)]], np.float32)
    crops = np.asarray(warp_regions(ramp, box, crop_size=crop, context_padding=padding))[0, :, :, 0]
    w = box[0, 2] - box[0, 0]
    columns = np.arange(crop) + 0.5
    expected = box[0, 0] + (columns - padding) * w / (crop - 2 * padding)
    np.testing.assert_allclose(crops[crop // 2], expected, atol=1e-3, err_msg=f"seed={seed}")
    dilated = np.asarray(dilate_for_context(box, crop, padding))[0]
    np.testing.assert_allclose(dilated[2] - dilated[0], w * crop / (crop - 2 * padding), rtol=1e-6)


def test_region_outside_the_image_is_the_mean_colour(rng, seed):
    image = rng.normal(0, 1, (20, 30, 3)).astype(np.float32)
    mean = image.reshape(-1, 3).mean(0)
    outside = np.array([[40.0, 5.0, 60.0, 15.0], [-30.0, -30.0, -5.0, -2.0]], np.float32)
    crops = np.asarray(warp_regions(image, outside, crop_size=8, context_padding=1.0, fill_value=mean))
    np.testing.assert_allclose(crops, np.broadcast_to(mean, crops.shape), rtol=1e-6, err_msg=f"seed={seed}")


def test_paper_context_scales_with_the_crop_and_bad_settings_are_refused():
    assert scaled_context_padding(227) == 16.0
    assert scaled_context_padding(45) == pytest.approx(16 * 45 / 227)
    with pytest.raises(ValueError, match="context_padding=8.0 must be in"):
        warp_regions(np.zeros((4, 4, 3)), np.zeros((1, 4)), crop_size=16, context_padding=8.0)


def test_regions_of_several_images_equal_each_image_warped_alone(rng, seed):
    images = rng.normal(0, 1, (3, 20, 20, 3)).astype(np.float32)
    sizes = np.array([[20, 20], [12, 17], [20, 9]], np.float32)
    boxes = random_boxes(rng, 9, 20, 20)
    index = rng.integers(0, 3, 9)
    crops = np.asarray(warp_regions_of_images(images, index, boxes, sizes, crop_size=7, context_padding=1.5))
    for r in range(9):
        alone = warp_regions(images[index[r]], boxes[r : r + 1], sizes[index[r]], crop_size=7, context_padding=1.5)
        np.testing.assert_allclose(crops[r], np.asarray(alone)[0], atol=1e-6, err_msg=f"seed={seed}")

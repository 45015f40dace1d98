"""Joint image/mask transforms: eval resize+pad against NumPy (nearest rule, np.interp bilinear, ignore
padding) and the train transforms' image/mask alignment under random scale, crop and flip."""

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data import segmentation_transforms as st
from vision_jax.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB


def numpy_fit(height, width, size, factor=1.0):
    scale = size * factor / max(height, width)
    return max(1, int(np.floor(height * scale + 0.5))), max(1, int(np.floor(width * scale + 0.5)))


def numpy_nearest(mask, new_h, new_w):
    rows = np.minimum(np.floor((np.arange(new_h) + 0.5) * mask.shape[0] / new_h).astype(int), mask.shape[0] - 1)
    cols = np.minimum(np.floor((np.arange(new_w) + 0.5) * mask.shape[1] / new_w).astype(int), mask.shape[1] - 1)
    return mask[rows][:, cols]


def numpy_bilinear_upscale(image, new_h, new_w):
    """Half-pixel-centre bilinear (edge-clamped) resize of [H, W, C], separable with np.interp."""

    def along(values, axis, new_len):
        old_len = values.shape[axis]
        positions = (np.arange(new_len) + 0.5) * old_len / new_len
        return np.apply_along_axis(lambda v: np.interp(positions, np.arange(old_len) + 0.5, v), axis, values)

    return along(along(image.astype(np.float64), 0, new_h), 1, new_w)


def test_eval_transform_matches_numpy_resize_and_ignore_padding(seed):
    rng = np.random.default_rng(seed)
    size = 48
    height, width = rng.integers(8, size, size=2)  # upscaling: antialiasing plays no part
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, size=(height, width)).astype(np.uint8)
    mask[rng.uniform(size=mask.shape) < 0.1] = 255
    out_image, out_mask = st.eval_transform(tf.constant(image), tf.constant(mask), size=size)
    out_image, out_mask = out_image.numpy(), out_mask.numpy()
    assert out_image.shape == (size, size, 3) and out_mask.shape == (size, size) and out_mask.dtype == np.int32

    new_h, new_w = numpy_fit(height, width, size)
    assert max(new_h, new_w) == size, f"seed={seed}"
    expected_mask = np.full((size, size), 255)
    expected_mask[:new_h, :new_w] = numpy_nearest(mask, new_h, new_w)
    np.testing.assert_array_equal(out_mask, expected_mask, err_msg=f"seed={seed}")

    normalised = (image / 255.0 - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB)
    expected_image = np.zeros((size, size, 3))
    expected_image[:new_h, :new_w] = numpy_bilinear_upscale(normalised, new_h, new_w)
    np.testing.assert_allclose(out_image, expected_image, atol=1e-4, err_msg=f"seed={seed}")


def block_scene(rng, height, width, block=12):
    """An image whose red channel is 40 * class on blocks of constant class (so resampling inside a
    block keeps the value), and its mask."""
    classes = rng.integers(0, 6, size=(-(-height // block), -(-width // block)))
    mask = np.kron(classes, np.ones((block, block), int))[:height, :width].astype(np.uint8)
    image = np.stack([mask * 40, rng.integers(0, 256, size=mask.shape), np.full(mask.shape, 90)], -1).astype(np.uint8)
    return image, mask


@pytest.mark.parametrize("min_scale,max_scale", [(0.5, 2.0), (1.0, 1.0)])
def test_train_transform_keeps_image_and_mask_aligned(min_scale, max_scale, seed):
    rng = np.random.default_rng(seed)
    size = 40
    red_mean, red_std = IMAGENET_MEAN_RGB[0], IMAGENET_STD_RGB[0]
    flipped_any = unflipped_any = False
    for trial in range(4):
        height, width = rng.integers(20, 70, size=2)
        image, mask = block_scene(rng, height, width)
        out_image, out_mask = st.train_transform(
            tf.constant(image),
            tf.constant(mask),
            tf.constant([seed, trial], tf.int64),
            size=size,
            min_scale=min_scale,
            max_scale=max_scale,
            flip=True,
        )
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert out_image.shape == (size, size, 3) and out_mask.shape == (size, size)
        labelled = out_mask != 255
        assert labelled.any(), f"seed={seed} trial={trial}: the window holds no labelled pixel"
        # Pixels whose 5x5 neighbourhood has one class: the image there must show that class.
        padded = np.pad(out_mask, 2, constant_values=-1)
        uniform = np.ones_like(labelled)
        for dy in range(5):
            for dx in range(5):
                uniform &= padded[dy : dy + size, dx : dx + size] == out_mask
        red = (out_image[..., 0] * red_std + red_mean) * 255.0
        inside = uniform & labelled
        np.testing.assert_allclose(
            red[inside],
            40.0 * out_mask[inside],
            atol=0.5,
            err_msg=f"seed={seed} trial={trial}: image and mask disagree",
        )
        # Padding: the image is 0 (the mean colour) wherever the map is padding beyond the image.
        if min_scale == max_scale == 1.0:
            fit_h, fit_w = numpy_fit(height, width, size)
            assert labelled.sum() == fit_h * fit_w, f"seed={seed}: scale 1 must keep the whole fitted image"
            left = np.array_equal(out_mask[:fit_h, :fit_w], numpy_nearest(mask, fit_h, fit_w))
            right = np.array_equal(out_mask[:fit_h, size - fit_w :], numpy_nearest(mask, fit_h, fit_w)[:, ::-1])
            assert left or right, f"seed={seed} trial={trial}: neither the map nor its mirror image"
            flipped_any |= right and not left
            unflipped_any |= left and not right
    if min_scale == max_scale == 1.0:
        assert flipped_any or unflipped_any


def test_bad_scale_range_is_refused():
    with pytest.raises(ValueError, match="min_scale"):
        st.train_transform(
            tf.zeros([4, 4, 3]),
            tf.zeros([4, 4], tf.uint8),
            tf.constant([0, 0], tf.int64),
            size=4,
            min_scale=2.0,
            max_scale=1.0,
        )

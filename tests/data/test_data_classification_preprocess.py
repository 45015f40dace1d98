"""The classification task's ImageNet-style preprocessing: short side resize then a crop
(centred in evaluation, random in training), with a model's own normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.tasks.classification import ClassificationTask, resize_and_crop
from vision_jax.train.config import base_config


def _image(rng, height, width):
    return rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)


@pytest.mark.parametrize("height, width", [(300, 451), (451, 300), (256, 256), (97, 513)])
def test_evaluation_crop_is_the_centre_of_the_short_side_resize(height, width, rng, seed):
    image = tf.constant(_image(rng, height, width), tf.float32)
    scale = 256 / min(height, width)
    resized_h, resized_w = int(np.floor(height * scale + 0.5)), int(np.floor(width * scale + 0.5))
    resized = tf.image.resize(image, [resized_h, resized_w], antialias=True).numpy()
    top, left = (resized_h - 224) // 2, (resized_w - 224) // 2
    crop = resize_and_crop(image, 256, 224, train=False, seed=tf.constant([0, seed % 2**31], tf.int64)).numpy()
    np.testing.assert_allclose(crop, resized[top : top + 224, left : left + 224], atol=1e-4, err_msg=f"seed={seed}")


def test_training_crop_is_a_window_of_the_resize_that_moves_with_the_seed(rng, seed):
    image = tf.constant(_image(rng, 300, 451), tf.float32)
    resized = tf.image.resize(image, [256, 385], antialias=True).numpy()
    windows = set()
    for step in range(6):
        crop = resize_and_crop(image, 256, 224, train=True, seed=tf.constant([step, seed % 2**31], tf.int64)).numpy()
        found = [
            (top, left)
            for top in range(256 - 224 + 1)
            for left in range(385 - 224 + 1)
            if np.allclose(crop[0, :3], resized[top, left : left + 3], atol=1e-4)
            and np.allclose(crop, resized[top : top + 224, left : left + 224], atol=1e-4)
        ]
        assert found, f"seed={seed}: training crop {step} is not a window of the resized image"
        windows.add(found[0])
    assert len(windows) > 1, f"seed={seed}: the crop does not move"


def test_preprocess_uses_the_configured_normalisation_and_static_shape():
    config = base_config("classification")
    config.data.image_size, config.data.resize_short_side = 32, 36
    config.data.mean_rgb, config.data.std_rgb = (127 / 255,) * 3, (128 / 255,) * 3
    preprocess = ClassificationTask(config).preprocess(None, train=False)
    image = np.full((40, 50, 3), 255, np.uint8)
    image[:, :, 1] = 127
    out = preprocess({"image": tf.constant(image), "label": tf.constant(3)}, tf.constant([0, 0], tf.int64))
    assert out["image"].shape == (32, 32, 3)
    np.testing.assert_allclose(out["image"].numpy()[..., 0], 128 / 128, atol=1e-5)  # (255 - 127) / 128
    np.testing.assert_allclose(out["image"].numpy()[..., 1], 0.0, atol=1e-5)
    config.data.resize_short_side = 16
    with pytest.raises(ValueError, match="resize_short_side=16 must be 0 or >= data.image_size=32"):
        ClassificationTask(config).preprocess(None, train=False)

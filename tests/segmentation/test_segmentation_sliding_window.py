"""The sliding-window baseline: every pixel's logits come from the crop centred on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones import ResNet
from vision_jax.models.segmentation.sliding_window import centre_pixel_classifier, sliding_window_logits


def numpy_crop(images, b, r, c, patch):
    """The patch x patch crop of pixel (r, c), zeros outside the image, pixel at (patch//2, patch//2)."""
    out = np.zeros((patch, patch, images.shape[-1]), images.dtype)
    top, left = r - patch // 2, c - patch // 2
    for i in range(patch):
        for j in range(patch):
            y, x = top + i, left + j
            if 0 <= y < images.shape[1] and 0 <= x < images.shape[2]:
                out[i, j] = images[b, y, x]
    return out


@pytest.mark.parametrize("patch", [4, 5])
def test_crop_sums_equal_numpy_box_sums_over_every_pixel(patch, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    # A "classifier" whose logits are the crop's per-channel sums and its centre pixel.
    classify = lambda crops: jnp.concatenate([crops.sum((1, 2)), crops[:, patch // 2, patch // 2]], -1)
    out = np.asarray(jax.jit(lambda x: sliding_window_logits(classify, x, patch, chunk_size=10))(images))
    assert out.shape == (2, 7, 9, 6)
    for b in range(2):
        for r in range(7):
            for c in range(9):
                crop = numpy_crop(images, b, r, c, patch)
                np.testing.assert_allclose(out[b, r, c, :3], crop.sum((0, 1)), atol=1e-4, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(out[..., 3:], images)


def test_cnn_logits_equal_the_classifier_on_explicit_crops(seed):
    rng = np.random.default_rng(seed)
    patch = 16
    images = rng.normal(size=(1, 12, 10, 3)).astype(np.float32)
    model = centre_pixel_classifier(ResNet(stage_sizes=(1, 1), block="basic", width=4), num_classes=3, feature="C3")
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, patch, patch, 3)), train=False))(
        jax.random.key(seed, impl="rbg")
    )
    out = jax.jit(
        lambda v, x: sliding_window_logits(lambda crops: model.apply(v, crops, train=False), x, patch, chunk_size=32)
    )(variables, images)
    pixels = [(int(r), int(c)) for r, c in zip(rng.integers(0, 12, 6), rng.integers(0, 10, 6))] + [(0, 0), (11, 9)]
    crops = np.stack([numpy_crop(images, 0, r, c, patch) for r, c in pixels])
    expected = np.asarray(model.apply(variables, crops, train=False))
    got = np.stack([np.asarray(out)[0, r, c] for r, c in pixels])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5, err_msg=f"seed={seed}")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="chunk_size=0"):
        sliding_window_logits(lambda c: c, jnp.zeros((1, 4, 4, 3)), 3, chunk_size=0)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        sliding_window_logits(lambda c: c, jnp.zeros((4, 4, 3)), 3)

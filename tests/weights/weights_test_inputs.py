"""Inputs of the weights tests: scikit-image's bundled photos prepared as ImageNet inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut")
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


def photos(size: int = 224, mean=TORCHVISION_MEAN, std=TORCHVISION_STD) -> np.ndarray:
    """chelsea, coffee, astronaut: short side resized to size * 256 / 224, centre crop size x size,
    (pixel / 255 - mean) / std. float32 [3, size, size, 3] (NHWC)."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photos")
    out = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage_data, name)())
        scale = round(size * 256 / 224) / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        pixels = np.asarray(image.crop((left, top, left + size, top + size)), np.float64)[..., :3]
        out.append((pixels / 255 - np.array(mean)) / np.array(std))
    return np.stack(out).astype(np.float32)


def max_relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))

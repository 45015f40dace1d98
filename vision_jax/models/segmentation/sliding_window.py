"""The baseline that FCNs replaced: classify every pixel from the crop centred on it.

Before FCN (e.g. Ciresan et al., 2012; Farabet et al., 2013), a CNN classified the centre pixel of a
p x p crop and was run over every pixel of the image: H x W forward passes of a patch network, where
an FCN shares all the convolutions in one pass over the image. `scripts/benchmark_segmentation.py`
times the two on the same image.

Crop convention: the crop of pixel (r, c) covers rows r - p // 2 .. r - p // 2 + p - 1 (and the same
for columns), so the pixel sits at (p // 2, p // 2) of its crop; the image is zero-padded (the mean
colour of a normalised image) where a crop leaves it.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.classifier import Classifier, ClassifierSettings


def centre_pixel_classifier(backbone: nn.Module, num_classes: int, feature: str = "C5", dtype=None) -> Classifier:
    """The patch CNN: backbone + global average pool of `feature` + dense -> logits [N, num_classes]
    for crops [N, p, p, 3] (a `Classifier` with the 'gap' head)."""
    settings = ClassifierSettings(head="gap", feature=feature)
    return Classifier(backbone=backbone, num_classes=num_classes, settings=settings, dtype=dtype)


def pad_for_crops(images: jax.Array, patch_size: int) -> jax.Array:
    """Zero-pads [B, H, W, C] by (p // 2 before, p - 1 - p // 2 after) on both spatial axes, so that the
    crop of pixel (r, c) starts at (r, c) of the padded image."""
    if patch_size < 1:
        raise ValueError(f"patch_size={patch_size} must be >= 1")
    before, after = patch_size // 2, patch_size - 1 - patch_size // 2
    return jnp.pad(images, ((0, 0), (before, after), (before, after), (0, 0)))


def crops_at(padded: jax.Array, batch_index: jax.Array, rows: jax.Array, cols: jax.Array, patch_size: int) -> jax.Array:
    """Crops [N, p, p, C] of the padded images [B, H + p - 1, W + p - 1, C] for pixels (rows, cols) [N]
    of images batch_index [N]."""
    channels = padded.shape[-1]

    def one(b, r, c):
        return jax.lax.dynamic_slice(padded, (b, r, c, 0), (1, patch_size, patch_size, channels))[0]

    return jax.vmap(one)(batch_index, rows, cols)


def sliding_window_logits(
    classify: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    patch_size: int,
    chunk_size: int = 1024,
) -> jax.Array:
    """Runs `classify` (crops [N, p, p, C] -> logits [N, K]) on the crop of every pixel.

    images: float32 [B, H, W, C]. The B*H*W crops are cut and classified `chunk_size` at a time (a
    lax.map over chunks, so memory holds one chunk of crops and activations, not all of them).
    Returns logits float32 [B, H, W, K]: [b, r, c] = classify(crop of pixel (r, c) of image b).
    Jittable; patch_size and chunk_size are static.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    batch, height, width, _ = images.shape
    padded = pad_for_crops(images, patch_size)
    total = batch * height * width
    num_chunks = -(-total // chunk_size)
    # Pixel order b, r, c; the last chunk repeats pixel 0 to stay full-size, and is trimmed afterwards.
    flat = jnp.arange(num_chunks * chunk_size, dtype=jnp.int32)
    flat = jnp.where(flat < total, flat, 0).reshape(num_chunks, chunk_size)

    def classify_chunk(indices):
        b, rest = jnp.divmod(indices, height * width)
        r, c = jnp.divmod(rest, width)
        return classify(crops_at(padded, b, r, c, patch_size)).astype(jnp.float32)

    logits = jax.lax.map(classify_chunk, flat)
    return logits.reshape(num_chunks * chunk_size, -1)[:total].reshape(batch, height, width, -1)

"""Argument checks every detector's `__call__` shares (Faster R-CNN, SSD, YOLO): one contract, one place."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def image_sizes_or_canvas(images: jax.Array, image_sizes: jax.Array | None) -> jax.Array:
    """float32 [B, 2] (height, width) of the valid image in each canvas; None means the whole canvas."""
    batch, height, width = images.shape[:3]
    if image_sizes is None:
        return jnp.broadcast_to(jnp.asarray([height, width], jnp.float32), (batch, 2))
    image_sizes = jnp.asarray(image_sizes, jnp.float32)
    if image_sizes.shape != (batch, 2):
        raise ValueError(f"image_sizes must be [B, 2]=({batch}, 2) (height, width), got {image_sizes.shape}")
    return image_sizes


def check_train_inputs(gt_boxes, gt_classes, gt_valid, gt_is_crowd) -> jax.Array:
    """Refuses missing or misshapen ground truth by name; returns gt_is_crowd (all False when None)."""
    if gt_boxes is None or gt_classes is None or gt_valid is None:
        raise ValueError("training needs gt_boxes [B, G, 4], gt_classes [B, G] and gt_valid [B, G]")
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"gt_boxes must be [B, G, 4], got shape {gt_boxes.shape}")
    return jnp.zeros(gt_valid.shape, bool) if gt_is_crowd is None else gt_is_crowd

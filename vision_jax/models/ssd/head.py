"""SSD's prediction head: one 3x3 conv per source for class logits and one for box deltas.

Level l with A_l default boxes per location predicts A_l * (C + 1) logits and A_l * 4 deltas per
location: channel block a of the class conv holds box a's logits, foreground class k at k and
background last, at C (the project's convention, `vision_jax.ops.postprocess`). Outputs are
flattened location-major (row, column), then box, then level by level: the order of
`vision_jax.ops.ssd_default_boxes`. Weights are Xavier-uniform with zero biases (torchvision's
SSDHead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class SSDHead(nn.Module):
    """features: L maps [B, H_l, W_l, C_l] -> (logits [B, sum_l H_l W_l A_l, C + 1] float32,
    background last; deltas [B, sum_l H_l W_l A_l, 4] float32, encoded with SSD's box weights)."""

    num_classes: int  # foreground classes C; the head predicts C + 1 (background last)
    boxes_per_location: Sequence[int]
    dtype: Any = None

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
        if len(features) != len(self.boxes_per_location):
            raise ValueError(
                f"SSDHead got {len(features)} feature maps for {len(self.boxes_per_location)} levels of default boxes"
            )
        conv = {
            "kernel_size": (3, 3),
            "padding": ((1, 1), (1, 1)),
            "dtype": self.dtype,
            "kernel_init": nn.initializers.xavier_uniform(),
            "bias_init": nn.initializers.zeros,
        }
        logits, deltas = [], []
        for level, (x, anchors) in enumerate(zip(features, self.boxes_per_location)):
            batch = x.shape[0]
            cls = nn.Conv(anchors * (self.num_classes + 1), name=f"cls_{level}", **conv)(x)
            box = nn.Conv(anchors * 4, name=f"box_{level}", **conv)(x)
            logits.append(cls.reshape(batch, -1, self.num_classes + 1))
            deltas.append(box.reshape(batch, -1, 4))
        return (
            jnp.concatenate(logits, axis=1).astype(jnp.float32),
            jnp.concatenate(deltas, axis=1).astype(jnp.float32),
        )

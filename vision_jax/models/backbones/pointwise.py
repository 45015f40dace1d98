"""A 1x1 convolution computed as a matrix product over channels.

Why: XLA's CPU backend runs the gradients of a 1x1 `lax.conv_general_dilated` as generic
convolutions, 2-5x slower than the same arithmetic as a matrix product (ResNet-50's 1x1 layers at
224², batch 8: scripts/benchmark_resnet50.py; README "Speed and memory"). A 1x1 convolution with
stride s and no padding is exactly `x[:, ::s, ::s, :] @ kernel[0, 0]`, so this module is
flax.linen.Conv(features, (1, 1), strides, padding='VALID', use_bias=False) with the same variable
('kernel', [1, 1, Cin, Cout]) and the same dtype promotion: checkpoints and weight converters see
no difference, and the outputs equal nn.Conv's up to float summation order.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class PointwiseConv(nn.Module):
    """[B, H, W, Cin] -> [B, ceil(H / strides), ceil(W / strides), features], no bias."""

    features: int
    strides: int = 1
    dtype: Any = None
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features), jnp.float32)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if self.strides != 1:
            x = x[:, :: self.strides, :: self.strides, :]
        return lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())))

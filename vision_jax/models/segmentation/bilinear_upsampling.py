"""Transposed-convolution upsampling initialised to bilinear interpolation (FCN's "deconvolution").

Long et al. (FCN, 2015) upsample class scores by an integer factor f with a transposed convolution
of stride f and kernel size k = 2f - f % 2, whose kernel starts as bilinear interpolation (Caffe's
`bilinear` filler / FCN's `upsample_filt`):

    K[t] = 1 - |t - c| / f,  t = 0..k-1,  c = f - 1 (f odd) or f - 0.5 (f even),

applied separably (K2[y, x] = K[y] K[x]) and channel-wise (channel c maps only to channel c).

Alignment. A "full" transposed convolution gives (n + 1) f (f even) outputs; we keep the n f of them
starting at offset f // 2 (Caffe FCN's crop of 16 for upscore32, 4 for upscore8, 1 for upscore2).
With that offset, output pixel m (centre at (m + 0.5) / f in input pixels) gets

    sum_i in[i] * (1 - |(m + 0.5) / f - (i + 0.5)|)_+,

exactly half-pixel-centre bilinear interpolation (align_corners=False, what jax.image.resize and
tf.image.resize compute) wherever both neighbouring input pixels exist. Within f / 2 output pixels
of the border the missing neighbour counts as zero (no renormalisation), as in FCN.
The crop is folded into the convolution's padding, so an [B, h, w, C] input gives exactly
[B, h f, w f, C].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _check_factor(factor: int) -> None:
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"upsampling factor must be a positive integer, got {factor!r}")


def bilinear_kernel_size(factor: int) -> int:
    """Kernel side k = 2 f - f % 2 of the bilinear upsampling filter for factor f."""
    _check_factor(factor)
    return 2 * factor - factor % 2


def bilinear_filter_1d(factor: int) -> np.ndarray:
    """The 1-D bilinear filter K [k] (float64) of FCN's upsample_filt (module docstring)."""
    size = bilinear_kernel_size(factor)
    centre = factor - 1 if factor % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size, dtype=np.float64) - centre) / factor


def bilinear_kernel(factor: int, channels: int, dtype=np.float32) -> np.ndarray:
    """Flax ConvTranspose kernel [k, k, channels, channels]: K2 on the diagonal, zeros elsewhere."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    filt = bilinear_filter_1d(factor)
    kernel = np.zeros((filt.size, filt.size, channels, channels), np.float64)
    kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(filt, filt)[:, :, None]
    return kernel.astype(dtype)


def bilinear_padding(factor: int) -> tuple[int, int]:
    """(low, high) padding of the dilated input that crops the full output at offset f // 2 and keeps
    exactly n f outputs: low = k - 1 - f // 2, high = f - 1 + f // 2."""
    size = bilinear_kernel_size(factor)
    return size - 1 - factor // 2, factor - 1 + factor // 2


def bilinear_kernel_init(factor: int):
    """A Flax initialiser (key, shape, dtype) -> bilinear kernel; shape must be [k, k, C, C]."""

    def init(key, shape, dtype=jnp.float32):
        del key  # deterministic
        size = bilinear_kernel_size(factor)
        if len(shape) != 4 or shape[0] != shape[1] != size or shape[2] != shape[3]:
            raise ValueError(f"bilinear init needs a kernel [{size}, {size}, C, C], got {shape}")
        return jnp.asarray(bilinear_kernel(factor, shape[2]), dtype)

    return init


class BilinearConvTranspose(nn.Module):
    """Upsamples [B, h, w, C] by `factor` to [B, h*factor, w*factor, C] (module docstring).

    With kernel K [k, k, C_in, C_out]: out[i f + a - f // 2, j f + b - f // 2, o] += x[i, j, c] K[a, b, c, o]
    for every input pixel (i, j) and tap (a, b), keeping outputs 0 .. h f - 1 (and 0 .. w f - 1).

    Attributes:
      factor: integer upsampling factor f (stride of the transposed convolution).
      trainable: True = a learned kernel (FCN's upscore2 / upscore_pool4) initialised to bilinear;
        False = fixed bilinear interpolation with no parameters (FCN's final upscore8/16/32, which the
        paper keeps fixed).
      dtype: compute dtype; the kernel parameter stays float32.
    """

    factor: int
    trainable: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"BilinearConvTranspose expects [B, H, W, C], got shape {x.shape}")
        channels = x.shape[-1]
        size = bilinear_kernel_size(self.factor)
        if self.trainable:
            kernel = self.param(
                "kernel", bilinear_kernel_init(self.factor), (size, size, channels, channels), jnp.float32
            )
        else:
            kernel = jnp.asarray(bilinear_kernel(self.factor, channels))
        dtype = self.dtype or x.dtype
        pad = bilinear_padding(self.factor)
        # lax.conv_transpose (transpose_kernel=False) scatters with the spatially flipped kernel; flipping
        # it here makes the stored kernel scatter as-is, as Caffe's Deconvolution and torch's
        # ConvTranspose2d do (their weights load after moving axes to [k, k, C_in, C_out]).
        kernel = kernel[::-1, ::-1]
        return jax.lax.conv_transpose(
            x.astype(dtype),
            kernel.astype(dtype),
            (self.factor, self.factor),
            (pad, pad),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

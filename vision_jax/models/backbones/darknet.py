"""Darknet-53 (Redmon & Farhadi, 2018, "YOLOv3: An Incremental Improvement", table 1) as a Flax module.

Every convolution is conv (no bias) + BatchNorm + LeakyReLU(0.1), as in darknet's cfg
(`batch_normalize=1`, `activation=leaky`). Layout for width w (32 in the paper):

    stem      3x3/1 conv, w channels                                   stride 1
    stage 1   3x3/2 conv to 2w,  1 residual block  -> 'C1'  2w  channels, stride 2
    stage 2   3x3/2 conv to 4w,  2 residual blocks -> 'C2'  4w  channels, stride 4
    stage 3   3x3/2 conv to 8w,  8 residual blocks -> 'C3'  8w  channels, stride 8
    stage 4   3x3/2 conv to 16w, 8 residual blocks -> 'C4'  16w channels, stride 16
    stage 5   3x3/2 conv to 32w, 4 residual blocks -> 'C5'  32w channels, stride 32

A residual block with c channels is 1x1 conv to c/2, 3x3 conv back to c, plus the identity
(darknet's `shortcut from=-3, activation=linear`). 52 convolutions + the classifier's FC = 53.

Padding is symmetric (darknet's pad = k // 2 on every side, also for the stride-2 convs), so an
input side divisible by 32 gives C5 of side exactly / 32. Outputs use the same 'C<level>' names as
ResNet (stride 2**level), so detectors switch backbones by name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

DARKNET53_STAGE_SIZES = (1, 2, 8, 8, 4)
LEAKY_SLOPE = 0.1
# Darknet initialises convolutions with a scaled uniform; He-normal (fan-in, leaky slope 0.1)
# keeps activations at unit scale through 52 layers, which matters more than matching darknet.
conv_kernel_init = nn.initializers.variance_scaling(2.0 / (1.0 + LEAKY_SLOPE**2), "fan_in", "normal")


class ConvBNLeaky(nn.Module):
    """Conv (no bias, symmetric padding k // 2) + BatchNorm + LeakyReLU(0.1): [B,H,W,Cin] -> [B,H/s,W/s,features]."""

    features: int
    kernel_size: int
    strides: int = 1
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = self.kernel_size // 2
        x = nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            self.strides,
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=conv_kernel_init,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
            name="bn",
        )(x)
        return nn.leaky_relu(x, LEAKY_SLOPE)


class DarknetResidual(nn.Module):
    """1x1 conv to channels/2, 3x3 conv back to channels, + identity: [B,H,W,C] -> [B,H,W,C]."""

    conv: Any  # a ConvBNLeaky factory taking (features, kernel_size, strides=, name=)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        y = self.conv(channels // 2, 1, name="conv1")(x, train)
        y = self.conv(channels, 3, name="conv2")(y, train)
        return x + y


class Darknet(nn.Module):
    """Darknet feature extractor (Darknet-53 with the default stage sizes).

    Attributes:
      stage_sizes: residual blocks per stage, (1, 2, 8, 8, 4) for Darknet-53; 1 to 5 stages.
      width: channels of the stem (32 in the paper); stage s has width * 2**s channels.
      dtype: compute dtype; parameters stay float32.
      bn_momentum, bn_epsilon, bn_axis_name: as in ResNet (Flax momentum convention).

    __call__(x: float [B, H, W, C_in], train: bool) -> {'C1': ..., 'C5': ...} arrays
    [B, H/2**s, W/2**s, width * 2**s] in `dtype` (module docstring). BatchNorm statistics are in
    the 'batch_stats' collection.
    """

    stage_sizes: Sequence[int] = DARKNET53_STAGE_SIZES
    width: int = 32
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"Darknet expects images [B, H, W, C] (NHWC), got shape {x.shape}")
        if not 1 <= len(self.stage_sizes) <= 5 or any(n < 1 for n in self.stage_sizes):
            raise ValueError(f"Darknet stage_sizes must be 1 to 5 positive block counts, got {tuple(self.stage_sizes)}")
        if self.width < 2 or self.width % 2:
            raise ValueError(f"Darknet width must be an even number >= 2 (blocks halve it), got {self.width}")
        conv = functools.partial(
            ConvBNLeaky,
            dtype=self.dtype,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            bn_axis_name=self.bn_axis_name,
        )
        x = conv(self.width, 3, name="stem")(x, train)
        features = {}
        for index, num_blocks in enumerate(self.stage_sizes):
            level = index + 1
            x = conv(self.width * 2**level, 3, strides=2, name=f"down{level}")(x, train)
            for block in range(num_blocks):
                x = DarknetResidual(conv, name=f"stage{level}_block{block}")(x, train)
            features[f"C{level}"] = x
        return features


def darknet53(**kwargs: Any) -> Darknet:
    """Darknet-53: residual blocks (1, 2, 8, 8, 4); C3, C4, C5 have 8w, 16w, 32w channels (256, 512, 1024)."""
    return Darknet(stage_sizes=DARKNET53_STAGE_SIZES, **kwargs)

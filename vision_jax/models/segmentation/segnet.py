"""SegNet (Badrinarayanan et al., 2017): an encoder whose max-pools remember where their maxima were,
and a mirror decoder that upsamples by putting values back at those positions (max-unpooling).

    images [B, H, W, 3] (padded to multiples of 2^n, n blocks)
    encoder block b: (3x3 conv -> BN -> ReLU) x n_b -> 2x2/2 max-pool with argmax   (H, W halve)
    decoder block b (deepest first): max-unpool with block b's argmax -> (3x3 conv -> BN -> ReLU) x n_b
    classifier: 1x1 conv -> class logits float32 [B, H, W, K]

The encoder is VGG-16-BN's trunk by default (`SegNetSettings.convs_per_block`: blocks of 2, 2, 3, 3,
3 convs, channels width x (1, 2, 4, 8, 8)), with VGG16's parameter names (`conv1_1`, `bn1_1`, ...)
under `encoder`, so weights of a `VGG16(batch_norm=True)` backbone of the same width (from a
classifier or a conv autoencoder, see `vision_jax.models.segmentation.autoencoder.copy_encoder_params`)
load into it. Unpooling needs the exact pre-pool size, so inputs are zero-padded at the bottom/right
to a multiple of 2^(number of blocks) and the logits cropped back, as in
`vision_jax.models.segmentation.fcn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.backbones.resnet import conv_kernel_init
from vision_jax.models.backbones.vgg import CHANNEL_MULTIPLIERS, CONVS_PER_BLOCK
from vision_jax.models.segmentation.fcn import pad_to_multiple
from vision_jax.models.segmentation.settings import SegNetSettings
from vision_jax.ops.pooling import max_pool_with_argmax, max_unpool


def _conv_bn_relu(module: nn.Module, x: jax.Array, features: int, name: str, train: bool) -> jax.Array:
    """3x3 conv (bias, as VGG16-BN) -> BatchNorm -> ReLU, as children `conv{name}` and `bn{name}` of
    `module` (called inside module's compact __call__, so Flax makes them its children)."""
    x = nn.Conv(
        features,
        (3, 3),
        padding=((1, 1), (1, 1)),
        use_bias=True,
        dtype=module.dtype,
        kernel_init=conv_kernel_init,
        name=f"conv{name}",
    )(x)
    x = nn.BatchNorm(
        use_running_average=not train,
        momentum=module.bn_momentum,
        epsilon=1e-5,
        dtype=module.dtype,
        axis_name=module.bn_axis_name,
        name=f"bn{name}",
    )(x)
    return nn.relu(x)


class SegNetEncoder(nn.Module):
    """VGG-style encoder returning its pooled output and, per block, (argmax, pre-pool shape).

    __call__(x [B, H, W, C] with H, W multiples of 2^len(convs_per_block), train) ->
      (pooled [B, H/2^n, W/2^n, C_n], [(argmax int32 [B, h_b/2, w_b/2, C_b], (h_b, w_b)), ...] shallow first).
    """

    width: int = 64
    convs_per_block: Sequence[int] = CONVS_PER_BLOCK
    channel_multipliers: Sequence[int] = CHANNEL_MULTIPLIERS
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool):
        switches = []
        for block, (num_convs, multiplier) in enumerate(zip(self.convs_per_block, self.channel_multipliers)):
            for index in range(num_convs):
                x = _conv_bn_relu(self, x, self.width * multiplier, f"{block + 1}_{index + 1}", train)
            size = (x.shape[1], x.shape[2])
            x, argmax = max_pool_with_argmax(x, 2, 2, "VALID")
            switches.append((argmax, size))
        return x, switches


class SegNetDecoder(nn.Module):
    """Mirror of SegNetEncoder: max-unpool with the stored argmax, then convs; deepest block first.

    The last conv of decoder block b outputs the channels of encoder block b - 1 (block 1: `width`),
    so each unpooling meets the channel count its argmax was taken at.
    """

    width: int = 64
    convs_per_block: Sequence[int] = CONVS_PER_BLOCK
    channel_multipliers: Sequence[int] = CHANNEL_MULTIPLIERS
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, switches, train: bool) -> jax.Array:
        num_blocks = len(self.convs_per_block)
        for block in reversed(range(num_blocks)):
            argmax, size = switches[block]
            x = max_unpool(x, argmax, size)
            channels = self.width * self.channel_multipliers[block]
            out_channels = self.width * self.channel_multipliers[block - 1] if block > 0 else self.width
            num_convs = self.convs_per_block[block]
            for index in range(num_convs):
                features = out_channels if index == num_convs - 1 else channels
                x = _conv_bn_relu(self, x, features, f"{block + 1}_{index + 1}", train)
        return x


class SegNet(nn.Module):
    """Encoder + max-unpooling decoder + 1x1 classifier.

    Attributes:
      num_classes: output channels.
      width: channels of the first block (64 in the paper; config.model.width).
      settings: `SegNetSettings` (config.model.segmentation): `convs_per_block`, convolutions per
        block (VGG-16's (2, 2, 3, 3, 3); fewer blocks for small inputs).
      dtype: compute dtype; logits float32.
      bn_momentum, bn_axis_name: BatchNorm options (Flax momentum; cross-replica axis).

    __call__(images float32 [B, H, W, 3] (any H, W), train) -> logits float32 [B, H, W, num_classes].
    """

    num_classes: int
    width: int = 64
    settings: SegNetSettings = SegNetSettings()
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"SegNet expects images [B, H, W, C], got shape {images.shape}")
        convs_per_block = tuple(self.settings.convs_per_block)
        if not 1 <= len(convs_per_block) <= len(CHANNEL_MULTIPLIERS):
            raise ValueError(f"convs_per_block={convs_per_block} must have 1 to {len(CHANNEL_MULTIPLIERS)} blocks")
        height, width = images.shape[1], images.shape[2]
        padded = pad_to_multiple(images, 2 ** len(convs_per_block))
        options = {
            "width": self.width,
            "convs_per_block": convs_per_block,
            "channel_multipliers": CHANNEL_MULTIPLIERS[: len(convs_per_block)],
            "dtype": self.dtype,
            "bn_momentum": self.bn_momentum,
            "bn_axis_name": self.bn_axis_name,
        }
        x, switches = SegNetEncoder(**options, name="encoder")(padded, train)
        x = SegNetDecoder(**options, name="decoder")(x, switches, train)
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
        return logits[:, :height, :width].astype(jnp.float32)

"""VGG-16 (Simonyan & Zisserman, 2015, configuration "D") feature extractor as a Flax Linen module.

Thirteen 3x3 convolutions (padding 1, with bias) in five blocks of (2, 2, 3, 3, 3), each block
ending in a 2x2/2 max-pool; optional BatchNorm after every conv (torchvision's vgg16_bn, which
keeps the conv biases). The classic fc6/fc7 head lives in `Classifier(head='vgg_fc')`; this
module is convolutional only, so detectors and segmenters reuse it at any input size.

Outputs (strides for an input of H x W):

    'C1'..'C5'  after pool1..pool5, strides 2, 4, 8, 16, 32; channels width*(1, 2, 4, 8, 8)
                ('C3' = pool3 and 'C4' = pool4 are FCN-8s's skip inputs, 'C5' = pool5).
    'conv4_3'   ReLU(conv4_3) before pool4, stride 8, 8*width channels (SSD's first source).
    'conv5_3'   ReLU(conv5_3) before pool5, stride 16, 8*width channels: SSD builds its own
                pool5 (3x3/1) and fc6/fc7-as-conv (dilated 3x3 and 1x1, 1024 channels) on it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from vision_jax.models.backbones.resnet import conv_kernel_init

CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
# Channels of block b are width * CHANNEL_MULTIPLIERS[b]: doubled per block, capped at 8x.
CHANNEL_MULTIPLIERS = (1, 2, 4, 8, 8)


class VGG16(nn.Module):
    """VGG-16 convolutional trunk.

    Attributes:
      batch_norm: BatchNorm after every conv (vgg16_bn).
      width: channels of block 1 (64 in the paper); tiny widths make tests cheap.
      dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
      ceil_mode: pool with torch's ceil_mode=True (odd sizes round up, the extra window padded
        with -inf), as SSD300 needs for 75 -> 38 at pool3. Default floors like torchvision.
      bn_momentum, bn_epsilon, bn_axis_name: as in ResNet (Flax momentum convention).

    __call__(x: float [B, H, W, C_in], train: bool) -> dict of [B, h, w, c] arrays in `dtype`
    (names, strides and channels in the module docstring).
    """

    batch_norm: bool = False
    width: int = 64
    dtype: Any = None
    ceil_mode: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"VGG16 expects images [B, H, W, C] (NHWC), got shape {x.shape}")
        features = {}
        for block, (num_convs, multiplier) in enumerate(zip(CONVS_PER_BLOCK, CHANNEL_MULTIPLIERS)):
            for conv_index in range(num_convs):
                name = f"{block + 1}_{conv_index + 1}"
                x = nn.Conv(
                    self.width * multiplier,
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    use_bias=True,
                    dtype=self.dtype,
                    kernel_init=conv_kernel_init,
                    name=f"conv{name}",
                )(x)
                if self.batch_norm:
                    x = nn.BatchNorm(
                        use_running_average=not train,
                        momentum=self.bn_momentum,
                        epsilon=self.bn_epsilon,
                        dtype=self.dtype,
                        axis_name=self.bn_axis_name,
                        name=f"bn{name}",
                    )(x)
                x = nn.relu(x)
            if block == 3:
                features["conv4_3"] = x
            elif block == 4:
                features["conv5_3"] = x
            x = self._pool(x)
            features[f"C{block + 1}"] = x
        return features

    def _pool(self, x: jax.Array) -> jax.Array:
        """2x2/2 max-pool; in ceil mode an odd trailing row/column gets its own (padded) window."""
        if self.ceil_mode:
            padding = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
        else:
            padding = ((0, 0), (0, 0))
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)

"""EfficientNet-Lite0 (TensorFlow's `efficientnet/lite`, 2020) as a Flax module.

EfficientNet-B0's block table without squeeze-excite, with ReLU6 instead of swish, the stem (32)
and head (1280) channels not scaled; BatchNorm eps 1e-3 and momentum 0.99 (TensorFlow's, also
Flax's convention); TensorFlow 'SAME' padding (inverted_residual.py). Its ImageNet input is
(pixel - 127) / 128 (`efficientnet_lite_builder.MEAN_RGB` / `STDDEV_RGB`), at 224².

16 blocks (B0's 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...). At 224² (width 32):

    'C2'  block 2   56²   24 channels, stride 4
    'C3'  block 4   28²   40 channels, stride 8
    'C4'  block 10  14²  112 channels, stride 16
    'C5'  the 1x1 head conv after block 15   7²  1280 channels, stride 32

Flax block{i} is `_blocks.{i}` of the PyTorch port (lukemelas' EfficientNet-PyTorch layout); the
classifier (dropout 0.2 + `_fc`) is `Classifier(head='gap', dropout_rate=0.2)` on C5.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from vision_jax.models.backbones.inverted_residual import BlockSpec, TrunkOptions, TrunkPlan, make_divisible, run_trunk

# EfficientNet-B0 blocks: expansion, output channels, repeats, first stride, kernel.
EFFICIENTNET_B0_STAGES = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (pixel - 127) / 128, as fractions of 255 for `transforms.normalize_image(image, mean, std)`.
LITE_MEAN_RGB = (127.0 / 255.0,) * 3
LITE_STD_RGB = (128.0 / 255.0,) * 3


def efficientnet_lite0_plan(width: int = STEM_CHANNELS) -> TrunkPlan:
    """The trunk for `width` stem channels. width 32 is EfficientNet-Lite0; another width scales
    the stem and blocks by width / 32 (rounded to multiples of 8) for cheap experiments and keeps
    the 1280-channel head (Lite's fixed head)."""
    multiplier = width / STEM_CHANNELS
    blocks = []
    for expand_ratio, channels, repeats, stride, kernel_size in EFFICIENTNET_B0_STAGES:
        for index in range(repeats):
            blocks.append(
                BlockSpec(make_divisible(channels * multiplier), stride if index == 0 else 1, kernel_size, expand_ratio)
            )
    return TrunkPlan(
        stem_channels=make_divisible(STEM_CHANNELS * multiplier),
        blocks=tuple(blocks),
        head_channels=HEAD_CHANNELS,
        feature_blocks=(2, 4, 10),
    )


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor.

    Attributes: as MobileNetV2's (`width` 32 = the published network), with TensorFlow's
    BatchNorm defaults (momentum 0.99, eps 1e-3).

    __call__(x: float [B, H, W, C_in], train: bool) -> {'C2'..'C5'} [B, H/s, W/s, C] in `dtype`.
    """

    width: int = STEM_CHANNELS
    dtype: Any = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    norm: str = "batch"
    frozen_stages: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        options = TrunkOptions(
            "same", self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.norm, self.frozen_stages
        )
        return run_trunk(x, train, efficientnet_lite0_plan(self.width), options)


def efficientnet_lite0(**kwargs: Any) -> EfficientNetLite0:
    """EfficientNet-Lite0 (width 32): 3,371,008 backbone parameters, 4,652,008 with the 1000-class head."""
    return EfficientNetLite0(**kwargs)

"""MobileNetV2 (Sandler et al., 2018, table 2) as laid out by torchvision, as a Flax module.

Stem 3x3/2 conv to 32 channels, then 17 inverted-residual blocks (t, c, n, s rows of the paper's
table 2), then a 1x1 conv to 1280 channels; BatchNorm eps 1e-5 and torch momentum 0.1 (Flax 0.9),
ReLU6, symmetric padding (k - 1) // 2 (inverted_residual.py). At 224² (width 32):

    'C2'  block 2  (end of the 24-channel stage)    56²  24 channels, stride 4
    'C3'  block 5  (end of the 32-channel stage)    28²  32 channels, stride 8
    'C4'  block 12 (end of the 96-channel stage)    14²  96 channels, stride 16
    'C5'  the 1x1 head conv after block 16           7²  1280 channels, stride 32

Flax block{i} is torchvision's features.{i + 1}; the classifier (Dropout 0.2 + Linear) is
`Classifier(head='gap', dropout_rate=0.2)` on C5.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from vision_jax.models.backbones.inverted_residual import BlockSpec, TrunkOptions, TrunkPlan, make_divisible, run_trunk

# Paper table 2: expansion t, output channels c, repeats n, first stride s; kernels are all 3x3.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def mobilenet_v2_plan(width: int = STEM_CHANNELS) -> TrunkPlan:
    """The trunk for `width` stem channels: every channel count scales by width / 32 (torchvision's
    width_mult) rounded to a multiple of 8; the head keeps 1280 unless the multiplier exceeds 1."""
    multiplier = width / STEM_CHANNELS
    blocks = []
    for expand_ratio, channels, repeats, stride in MOBILENET_V2_STAGES:
        for index in range(repeats):
            blocks.append(
                BlockSpec(make_divisible(channels * multiplier), stride if index == 0 else 1, 3, expand_ratio)
            )
    return TrunkPlan(
        stem_channels=make_divisible(STEM_CHANNELS * multiplier),
        blocks=tuple(blocks),
        head_channels=make_divisible(HEAD_CHANNELS * max(1.0, multiplier)),
        feature_blocks=(2, 5, 12),
    )


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor.

    Attributes:
      width: channels of the stem (32 = the published network, torchvision's width_mult 1.0);
        the other layers scale with it (`mobilenet_v2_plan`). Tiny widths make tests cheap.
      dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
      bn_momentum: Flax convention (0.9 = torch's momentum 0.1); bn_epsilon: 1e-5 as torchvision.
      bn_axis_name: axis for cross-replica BatchNorm statistics (None: per device).
      norm: 'batch' or 'frozen' (FrozenBatchNorm everywhere, for fine-tuning with small batches).
      frozen_stages: 0 = train all, 1 = freeze the stem, k >= 2 = the stem and C2..Ck (frozen parts
        use FrozenBatchNorm and stop_gradient), as ResNet's.

    __call__(x: float [B, H, W, C_in], train: bool) -> {'C2'..'C5'} [B, H/s, W/s, C] in `dtype`.
    """

    width: int = STEM_CHANNELS
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    norm: str = "batch"
    frozen_stages: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        options = TrunkOptions(
            "symmetric", self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.norm, self.frozen_stages
        )
        return run_trunk(x, train, mobilenet_v2_plan(self.width), options)


def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 1.0 (width 32): 2,223,872 backbone parameters, 3,504,872 with the 1000-class head."""
    return MobileNetV2(**kwargs)

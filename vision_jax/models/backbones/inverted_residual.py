"""The inverted-residual trunk shared by MobileNetV2 and EfficientNet-Lite (Sandler et al., 2018).

A trunk is: stem (3x3/2 conv + BN + ReLU6), a sequence of inverted-residual blocks, and a head
(1x1 conv + BN + ReLU6). A block with input c_in, expansion t, kernel k, stride s, output c_out:

    expand    1x1 conv to t * c_in + BN + ReLU6     (absent when t == 1)
    depthwise k x k conv, stride s, one filter per channel (feature_group_count) + BN + ReLU6
    project   1x1 conv to c_out + BN                (linear bottleneck: no activation)
    + the input, when s == 1 and c_in == c_out

Every conv has no bias. The two networks differ in their block tables, BatchNorm constants and
padding: torchvision's MobileNetV2 pads (k - 1) // 2 on every side ('symmetric'); EfficientNet-Lite,
trained in TensorFlow, pads 'SAME': max((ceil(n / s) - 1) * s + k - n, 0) pixels in all, the odd
one after (a 3x3/2 conv on an even side pads 0 before and 1 after), as Flax's 'SAME' does.

Outputs: {'C2', 'C3', 'C4', 'C5'} at strides 4, 8, 16, 32: the last block of each stride, and the
head's output as C5 (the feature torchvision's detection models and the SSDLite paper read).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax

from vision_jax.models.backbones.resnet import FrozenBatchNorm, conv_kernel_init

PADDINGS = ("symmetric", "same")
NORMS = ("batch", "frozen")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: output channels, depthwise stride and kernel, expansion t."""

    out_channels: int
    stride: int
    kernel_size: int
    expand_ratio: int


@dataclasses.dataclass(frozen=True)
class TrunkPlan:
    """A whole trunk. `feature_blocks` are the indices of the blocks whose outputs are C2, C3, C4."""

    stem_channels: int
    blocks: tuple[BlockSpec, ...]
    head_channels: int
    feature_blocks: tuple[int, int, int]

    def feature_channels(self) -> dict[str, int]:
        c2, c3, c4 = (self.blocks[i].out_channels for i in self.feature_blocks)
        return {"C2": c2, "C3": c3, "C4": c4, "C5": self.head_channels}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), never below 90% of `value`.

    The channel rounding of both torchvision's MobileNetV2 (`_make_divisible`) and TensorFlow's
    EfficientNet (`round_filters`).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _padding(padding: str, kernel_size: int) -> Any:
    if padding == "same":
        return "SAME"
    pad = (kernel_size - 1) // 2
    return ((pad, pad), (pad, pad))


class InvertedResidual(nn.Module):
    """One block (module docstring). [B, H, W, C_in] -> [B, H/s, W/s, spec.out_channels]."""

    spec: BlockSpec
    norm: Callable[..., nn.Module]
    padding: str = "symmetric"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self.spec
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_kernel_init)
        hidden = x.shape[-1] * spec.expand_ratio
        y = x
        if spec.expand_ratio != 1:
            y = nn.relu6(self.norm(name="expand_bn")(conv(hidden, (1, 1), padding="VALID", name="expand_conv")(y)))
        y = conv(
            hidden,
            (spec.kernel_size, spec.kernel_size),
            spec.stride,
            padding=_padding(self.padding, spec.kernel_size),
            feature_group_count=hidden,
            name="depthwise_conv",
        )(y)
        y = nn.relu6(self.norm(name="depthwise_bn")(y))
        y = self.norm(name="project_bn")(conv(spec.out_channels, (1, 1), padding="VALID", name="project_conv")(y))
        if spec.stride == 1 and x.shape[-1] == spec.out_channels:
            y = y + x
        return y


def _norm_factory(frozen: bool, train: bool, options: "TrunkOptions") -> Callable[..., nn.Module]:
    if frozen:
        return functools.partial(FrozenBatchNorm, epsilon=options.bn_epsilon, dtype=options.dtype)
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=options.bn_momentum,
        epsilon=options.bn_epsilon,
        dtype=options.dtype,
        axis_name=options.bn_axis_name,
    )


@dataclasses.dataclass(frozen=True)
class TrunkOptions:
    """The module fields a trunk reads (see MobileNetV2 for their meaning)."""

    padding: str
    dtype: Any
    bn_momentum: float
    bn_epsilon: float
    bn_axis_name: str | None
    norm: str
    frozen_stages: int


def run_trunk(x: jax.Array, train: bool, plan: TrunkPlan, options: TrunkOptions) -> dict[str, jax.Array]:
    """Builds and applies the trunk inside the calling module's compact scope (its children are
    named stem_conv, stem_bn, block0..block{n-1}, head_conv, head_bn).

    x: float [B, H, W, C_in] -> {'C2'..'C5'}: [B, H/s, W/s, C] in options.dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, H, W, C] (NHWC), got shape {x.shape}")
    if options.padding not in PADDINGS:
        raise ValueError(f"unknown padding {options.padding!r}; expected one of {list(PADDINGS)}")
    if options.norm not in NORMS:
        raise ValueError(f"unknown norm {options.norm!r}; expected one of {list(NORMS)}")
    if not 0 <= options.frozen_stages <= 5:
        raise ValueError(
            f"frozen_stages must be in [0, 5] (0 = none, 1 = stem, k = stem and C2..Ck), got {options.frozen_stages}"
        )

    def norm(level: int) -> Callable[..., nn.Module]:
        return _norm_factory(options.norm == "frozen" or options.frozen_stages >= level, train, options)

    def freeze(y: jax.Array, level: int) -> jax.Array:
        return jax.lax.stop_gradient(y) if options.frozen_stages >= level else y

    conv = functools.partial(nn.Conv, use_bias=False, dtype=options.dtype, kernel_init=conv_kernel_init)
    x = conv(plan.stem_channels, (3, 3), 2, padding=_padding(options.padding, 3), name="stem_conv")(x)
    x = freeze(nn.relu6(norm(1)(name="stem_bn")(x)), 1)

    features = {}
    level = 2  # the C-level the next block belongs to
    ends = {index: f"C{2 + i}" for i, index in enumerate(plan.feature_blocks)}
    for index, spec in enumerate(plan.blocks):
        x = InvertedResidual(spec, norm(level), options.padding, options.dtype, name=f"block{index}")(x)
        if index in ends:
            x = freeze(x, level)
            features[ends[index]] = x
            level += 1
    x = conv(plan.head_channels, (1, 1), padding="VALID", name="head_conv")(x)
    features["C5"] = freeze(nn.relu6(norm(5)(name="head_bn")(x)), 5)
    return features

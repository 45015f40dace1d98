"""ResNet v1.5 backbones (He et al., 2016, as laid out by torchvision) as Flax Linen modules.

"v1.5": in a bottleneck block the stride of a downsampling block sits in the 3x3 convolution, not in
the first 1x1 (the original paper's v1). Shortcuts are identity when shapes agree and a projection
(1x1 conv with the block's stride + BatchNorm) otherwise ("option B" of the paper).

Outputs are a dict of stage features, the names detectron2 and the FPN paper use:

    stem 'imagenet' (7x7/2 conv, 3x3/2 max-pool; 224² inputs):  C2..C5 at strides 4, 8, 16, 32
    stem 'cifar'    (3x3/1 conv, no pool; 28-64 px inputs):      C2..C5 at strides 1, 2, 4, 8

Channels of C2..C5 are width * (1, 2, 4, 8) for basic blocks and 4x that for bottleneck blocks.

Padding is explicit and symmetric (torchvision's padding=k//2). Flax's 'SAME' would pad (2, 3)
for the 7x7/2 stem on an even input instead of (3, 3), shifting every feature by a pixel and
breaking weight compatibility with torchvision; the NumPy reference test catches exactly that.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.backbones.pointwise import PointwiseConv
from vision_jax.ops.pooling import max_pool

# torchvision: kaiming_normal_(mode='fan_out', nonlinearity='relu') = N(0, 2 / (kh*kw*out)),
# untruncated. Flax's default (lecun_normal, fan_in) gives a different scale.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
STEMS = ("imagenet", "cifar")
NORMS = ("batch", "frozen")


def _same_padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """torchvision's symmetric padding k//2 on both sides of H and W (odd kernels)."""
    pad = kernel_size // 2
    return ((pad, pad), (pad, pad))


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine: y = (x - mean) / sqrt(var + eps) * scale + bias.

    detectron2's FrozenBatchNorm2d: used when fine-tuning with small per-device batches. The
    variables have the same names and shapes as nn.BatchNorm's (params 'scale', 'bias';
    batch_stats 'mean', 'var'), so a checkpoint trained with norm='batch' loads into
    norm='frozen'. Statistics are never updated and scale/bias get no gradient (stop_gradient).
    The affine transform is computed in float32 and cast to `dtype` (or x.dtype).
    """

    epsilon: float = 1e-5
    dtype: Any = None
    scale_init: Callable[..., jax.Array] = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        multiplier = jax.lax.stop_gradient(scale * jax.lax.rsqrt(var.value + self.epsilon))
        shift = jax.lax.stop_gradient(bias - mean.value * multiplier)
        out_dtype = self.dtype or x.dtype
        return (x.astype(jnp.float32) * multiplier + shift).astype(out_dtype)


def _norm_layer(
    norm: str, train: bool, dtype: Any, momentum: float, epsilon: float, axis_name: str | None
) -> Callable[..., nn.Module]:
    """A norm-module factory taking (name=..., scale_init=...)."""
    if norm == "frozen":
        return functools.partial(FrozenBatchNorm, epsilon=epsilon, dtype=dtype)
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        axis_name=axis_name,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs (stride in the first) + shortcut. [B,H,W,Cin] -> [B,H/s,W/s,features]."""

    features: int
    strides: int
    norm: Callable[..., nn.Module]
    dtype: Any = None
    zero_init_residual: bool = False

    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_kernel_init)
        last_scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        y = conv(self.features, (3, 3), self.strides, padding=_same_padding(3), name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = conv(self.features, (3, 3), 1, padding=_same_padding(3), name="conv2")(y)
        y = self.norm(name="bn2", scale_init=last_scale_init)(y)
        pointwise = functools.partial(PointwiseConv, dtype=self.dtype, kernel_init=conv_kernel_init)
        return nn.relu(y + _shortcut(x, self.features, self.strides, pointwise, self.norm))


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3 (carries the stride: v1.5), 1x1 expand to 4*features, + shortcut.

    The 1x1 convolutions are PointwiseConv (matrix products; same variables as nn.Conv): XLA's CPU
    backend runs their gradients 2-5x faster than as convolutions.

    [B,H,W,Cin] -> [B,H/s,W/s,4*features].
    """

    features: int
    strides: int
    norm: Callable[..., nn.Module]
    dtype: Any = None
    zero_init_residual: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_kernel_init)
        out_features = self.features * self.expansion
        last_scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        pointwise = functools.partial(PointwiseConv, dtype=self.dtype, kernel_init=conv_kernel_init)
        y = pointwise(self.features, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = conv(self.features, (3, 3), self.strides, padding=_same_padding(3), name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = pointwise(out_features, name="conv3")(y)
        y = self.norm(name="bn3", scale_init=last_scale_init)(y)
        return nn.relu(y + _shortcut(x, out_features, self.strides, pointwise, self.norm))


def _shortcut(
    x: jax.Array, out_features: int, strides: int, pointwise: Callable[..., nn.Module], norm: Callable[..., nn.Module]
) -> jax.Array:
    """Identity, or 1x1/stride conv (a PointwiseConv factory) + norm when the block changes stride or channels.

    Decided on stride and channels (torchvision's rule), not on the output shape: a stride-2
    block on a 1x1 map keeps the shape but still has (and needs, for checkpoints) a projection.
    Must be called inside the block's compact scope: the modules become the block's children.
    """
    if strides == 1 and x.shape[-1] == out_features:
        return x
    x = pointwise(out_features, strides, name="downsample_conv")(x)
    return norm(name="downsample_bn")(x)


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNetStage(nn.Module):
    """One ResNet stage: `num_blocks` blocks, the first with stride `strides` (and a projection).

    Public so that a detector's C4 variant can run res5 as its RoI head on pooled features:
    ResNetStage('bottleneck', 3, 512, strides=2)(roi_features [R,14,14,1024], train) -> [R,7,7,2048].
    `features` is the block width (the bottleneck's inner width); the output has
    features * expansion channels (1 for 'basic', 4 for 'bottleneck').
    """

    block: str
    num_blocks: int
    features: int
    strides: int = 1
    norm: str = "batch"
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    zero_init_residual: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        _check_choice("block", self.block, tuple(BLOCKS))
        _check_choice("norm", self.norm, NORMS)
        norm = _norm_layer(self.norm, train, self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_axis_name)
        for index in range(self.num_blocks):
            x = BLOCKS[self.block](
                features=self.features,
                strides=self.strides if index == 0 else 1,
                norm=norm,
                dtype=self.dtype,
                zero_init_residual=self.zero_init_residual,
                name=f"block{index}",
            )(x)
        return x


class ResNet(nn.Module):
    """ResNet v1.5 feature extractor.

    Attributes:
      stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50; 1 to 4 stages (a 3-stage
        net gives C2..C4, e.g. the trunk of a Faster R-CNN C4 model whose res5 is the RoI head).
      block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50/101).
      width: channels of the stem and inner width of the first stage (64 in the paper); stage i
        has width * 2**i. Tiny widths make tests cheap.
      stem: 'imagenet' (7x7/2 conv pad 3 + 3x3/2 max-pool pad 1) or 'cifar' (3x3/1 conv pad 1,
        no pool) for 28-64 px inputs.
      dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
      bn_momentum: Flax convention, running = momentum * running + (1 - momentum) * batch
        (0.9 here is torch's momentum=0.1). Flax updates the running variance with the biased
        batch variance; torch uses the unbiased one (a factor n/(n-1), n = B*H*W).
      bn_epsilon: added to the variance.
      bn_axis_name: mesh/vmap axis over which BatchNorm averages statistics (cross-replica BN,
        e.g. 'data' under shard_map); None = per-device statistics.
      zero_init_residual: start the last BN scale of every block at 0, so each block starts as
        the identity (Goyal et al., 2017).
      frozen_stages: detectron2's FREEZE_AT: 0 = train everything, 1 = freeze the stem,
        k >= 2 = freeze the stem and C2..Ck. Frozen parts use FrozenBatchNorm and their outputs
        pass through stop_gradient, so neither their weights nor their statistics change.
      norm: 'batch' (nn.BatchNorm) or 'frozen' (FrozenBatchNorm everywhere).

    __call__(x: float [B, H, W, C_in], train: bool) -> {'C2': ..., 'C5': ...} float arrays
    [B, H/s, W/s, C] in `dtype` (strides s in the module docstring). Batch statistics are in the
    'batch_stats' collection: apply(..., train=True, mutable=['batch_stats']).
    """

    stage_sizes: Sequence[int]
    block: str
    width: int = 64
    stem: str = "imagenet"
    dtype: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    zero_init_residual: bool = False
    frozen_stages: int = 0
    norm: str = "batch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        self._validate(x)
        stem_norm = "frozen" if (self.norm == "frozen" or self.frozen_stages >= 1) else "batch"
        norm = _norm_layer(stem_norm, train, self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_axis_name)
        conv = functools.partial(
            nn.Conv, self.width, use_bias=False, dtype=self.dtype, kernel_init=conv_kernel_init, name="conv1"
        )
        if self.stem == "imagenet":
            x = nn.relu(norm(name="bn1")(conv((7, 7), 2, padding=_same_padding(7))(x)))
            # Padding with -inf so the border never wins against real values; ops.max_pool equals
            # nn.max_pool, values and gradient, with a backward XLA's CPU backend runs 25x faster.
            x = max_pool(x, (3, 3), 2, padding=_same_padding(3))
        else:
            x = nn.relu(norm(name="bn1")(conv((3, 3), 1, padding=_same_padding(3))(x)))
        if self.frozen_stages >= 1:
            x = jax.lax.stop_gradient(x)

        features = {}
        for index, num_blocks in enumerate(self.stage_sizes):
            level = index + 2
            frozen = self.frozen_stages >= level
            x = ResNetStage(
                block=self.block,
                num_blocks=num_blocks,
                features=self.width * 2**index,
                strides=1 if index == 0 else 2,
                norm="frozen" if (frozen or self.norm == "frozen") else "batch",
                dtype=self.dtype,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                bn_axis_name=self.bn_axis_name,
                zero_init_residual=self.zero_init_residual,
                name=f"layer{index + 1}",
            )(x, train)
            if frozen:
                x = jax.lax.stop_gradient(x)
            features[f"C{level}"] = x
        return features

    def _validate(self, x: jax.Array) -> None:
        _check_choice("block", self.block, tuple(BLOCKS))
        _check_choice("stem", self.stem, STEMS)
        _check_choice("norm", self.norm, NORMS)
        if not 1 <= len(self.stage_sizes) <= 4 or any(n < 1 for n in self.stage_sizes):
            raise ValueError(f"ResNet stage_sizes must be 1 to 4 positive block counts, got {tuple(self.stage_sizes)}")
        if not 0 <= self.frozen_stages <= len(self.stage_sizes) + 1:
            raise ValueError(
                f"ResNet frozen_stages must be in [0, {len(self.stage_sizes) + 1}] "
                f"(0 = none, 1 = stem, k = stem and C2..Ck), got {self.frozen_stages}"
            )
        if x.ndim != 4:
            raise ValueError(f"ResNet expects images [B, H, W, C] (NHWC), got shape {x.shape}")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {field} {value!r}; expected one of {list(choices)}")


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2); C5 has 8*width channels (512)."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3); C5 has 8*width channels (512)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block="basic", **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 v1.5: bottleneck blocks (3, 4, 6, 3); C5 has 32*width channels (2048)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 v1.5: bottleneck blocks (3, 4, 23, 3); C5 has 32*width channels (2048)."""
    return ResNet(stage_sizes=(3, 4, 23, 3), block="bottleneck", **kwargs)

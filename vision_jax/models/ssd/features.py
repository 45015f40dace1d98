"""SSD's multi-scale feature extractors (Liu et al., 2016): a trunk plus extra stride-2 layers.

* `SSDVGGFeatures` (the paper's SSD300/SSD512, torchvision's ssd300_vgg16 layout): VGG-16 with
  ceil-mode pooling; source 1 = conv4_3 (stride 8) through `L2Norm` (learned per-channel scale,
  init 20, because conv4_3's activations are much larger than the later sources'); pool5
  becomes 3x3/1 pad 1, fc6 a 3x3 conv with dilation 6 (pad 6) and fc7 a 1x1 conv, both
  fc_channels (1024) + ReLU: source 2 = fc7 (stride 16); then the extra layers.
  SSD300 gives 38, 19, 10, 5, 3, 1 maps; SSD512 (one more extra, the last a 4x4 conv) gives
  64, 32, 16, 8, 4, 2, 1.
* `SSDResNetFeatures`: stage outputs (e.g. 'C4', 'C5') of a ResNet (or of any backbone that returns
  the C-level dict: MobileNetV2, EfficientNet-Lite0, Darknet) as the first sources, then the
  extra layers on the last one (conv + BatchNorm + ReLU when `extras_norm`). With
  `source_channels` = k > 0, each stage output first goes through a 3x3 conv (k channels) +
  BatchNorm + ReLU, a small prediction module in the spirit of DSSD (Fu et al., 2017): a
  narrow ResNet's early stages (e.g. 32 channels at C3 for width 16) are too thin for the
  single linear 3x3 conv of the SSD head.

An extra layer is (mid_channels, out_channels, kernel, stride, padding): a 1x1 conv to
mid_channels + ReLU, then a kernel x kernel conv with that stride and symmetric padding + ReLU;
each one's output is a source.

The values come from `SSDSettings` (settings.py, where their defaults live) through build.py. The
ResNet variant's own BatchNorms (source modules, extras) reduce their statistics over
`bn_axis_name` (the "data" axis with config.model.cross_replica_bn, else per device), like the
backbone's.

__call__(images float [B, H, W, 3] (normalised pixels), train) -> list of L feature maps
[B, H_l, W_l, C_l], the first at the highest resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.backbones.resnet import conv_kernel_init
from vision_jax.models.backbones.vgg import VGG16

ExtraSpec = tuple[int, int, int, int, int]  # (mid_channels, out_channels, kernel, stride, padding)


class L2Norm(nn.Module):
    """Per-location L2 normalisation over channels times a learned per-channel scale (ParseNet).

    [B, H, W, C] -> same shape: x / max(||x||_2 over C, 1e-12) * scale, scale initialised to
    `scale_init` (SSDSettings.l2norm_scale, 20 in SSD). Computed in float32, returned in x's dtype.
    """

    scale_init: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.constant(self.scale_init), (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        norm = jnp.sqrt(jnp.sum(x32 * x32, axis=-1, keepdims=True))
        return (x32 / jnp.maximum(norm, 1e-12) * scale).astype(x.dtype)


def check_extras(extras: Sequence[Sequence[int]]) -> tuple[ExtraSpec, ...]:
    specs = tuple(tuple(int(v) for v in spec) for spec in extras)
    for spec in specs:
        if len(spec) != 5 or min(spec[:4]) < 1 or spec[4] < 0:
            raise ValueError(
                f"each SSD extra layer must be (mid_channels, out_channels, kernel, stride, padding) with "
                f"positive channels/kernel/stride; got {spec} in {specs}"
            )
    return specs  # type: ignore[return-value]


class ExtraLayers(nn.Module):
    """The extra feature layers: x [B, H, W, C] -> list of one map per spec (module docstring)."""

    extras: Sequence[ExtraSpec]
    norm: bool  # BatchNorm after each conv (the ResNet variant)
    dtype: Any = None
    bn_axis_name: str | None = None  # the BatchNorms' cross-replica axis (None: per device)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> list[jax.Array]:
        outputs = []
        for index, (mid, out, kernel, stride, padding) in enumerate(check_extras(self.extras)):
            for part, (channels, size, strides, pad) in enumerate(((mid, 1, 1, 0), (out, kernel, stride, padding))):
                if x.shape[1] + 2 * pad < size or x.shape[2] + 2 * pad < size:
                    raise ValueError(
                        f"SSD extra layer {index} {(mid, out, kernel, stride, padding)} gets a "
                        f"{x.shape[1]}x{x.shape[2]} map, smaller than its kernel: the input is too small "
                        f"for this many extra layers"
                    )
                x = nn.Conv(
                    channels,
                    (size, size),
                    strides,
                    padding=((pad, pad), (pad, pad)),
                    use_bias=not self.norm,
                    dtype=self.dtype,
                    kernel_init=conv_kernel_init,
                    name=f"extra{index}_conv{part}",
                )(x)
                if self.norm:
                    x = nn.BatchNorm(
                        use_running_average=not train,
                        dtype=self.dtype,
                        axis_name=self.bn_axis_name,
                        name=f"extra{index}_bn{part}",
                    )(x)
                x = nn.relu(x)
            outputs.append(x)
        return outputs


class SSDVGGFeatures(nn.Module):
    """VGG-16 SSD sources (module docstring). `vgg` must pool in ceil mode (SSD300: 75 -> 38)."""

    vgg: VGG16
    extras: Sequence[ExtraSpec]
    fc_channels: int
    l2norm: bool
    l2norm_scale: float
    dtype: Any = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> list[jax.Array]:
        trunk = self.vgg(images, train)
        conv4_3 = trunk["conv4_3"]
        first = L2Norm(self.l2norm_scale, name="conv4_3_l2norm")(conv4_3) if self.l2norm else conv4_3
        x = nn.max_pool(trunk["conv5_3"], (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))  # pool5
        conv = {"dtype": self.dtype, "kernel_init": conv_kernel_init}
        x = nn.relu(
            nn.Conv(self.fc_channels, (3, 3), padding=((6, 6), (6, 6)), kernel_dilation=6, name="fc6", **conv)(x)
        )
        fc7 = nn.relu(nn.Conv(self.fc_channels, (1, 1), name="fc7", **conv)(x))
        return [first, fc7, *ExtraLayers(self.extras, norm=False, dtype=self.dtype, name="extras")(fc7, train)]


class SSDResNetFeatures(nn.Module):
    """ResNet SSD sources: the `sources` stage outputs, then the extra layers on the last one."""

    resnet: nn.Module  # any backbone returning {'C2'..'C5'} (ResNet, MobileNetV2...); named for the first
    extras: Sequence[ExtraSpec]
    sources: Sequence[str]
    extras_norm: bool
    source_channels: int  # 0: no per-source conv + BN + ReLU
    l2norm: bool
    l2norm_scale: float
    dtype: Any = None
    bn_axis_name: str | None = None  # the BatchNorms' cross-replica axis (None: per device)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> list[jax.Array]:
        stages = self.resnet(images, train)
        missing = [name for name in self.sources if name not in stages]
        if missing or not self.sources:
            raise ValueError(f"SSD ResNet sources {tuple(self.sources)} must be among the backbone's {sorted(stages)}")
        maps = [stages[name] for name in self.sources]
        if self.source_channels:
            maps = [
                nn.relu(
                    nn.BatchNorm(
                        use_running_average=not train,
                        dtype=self.dtype,
                        axis_name=self.bn_axis_name,
                        name=f"{name}_module_bn",
                    )(
                        nn.Conv(
                            self.source_channels,
                            (3, 3),
                            padding=((1, 1), (1, 1)),
                            use_bias=False,
                            dtype=self.dtype,
                            kernel_init=conv_kernel_init,
                            name=f"{name}_module_conv",
                        )(x)
                    )
                )
                for name, x in zip(self.sources, maps)
            ]
        if self.l2norm:
            maps[0] = L2Norm(self.l2norm_scale, name="first_l2norm")(maps[0])
        return [
            *maps,
            *ExtraLayers(
                self.extras, norm=self.extras_norm, dtype=self.dtype, bn_axis_name=self.bn_axis_name, name="extras"
            )(maps[-1], train),
        ]

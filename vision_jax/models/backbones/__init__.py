"""Backbones: modules mapping images [B, H, W, C] to a dict of stage features.

One explicit table maps a config's backbone name to its constructor:

    build_backbone('resnet50', dtype=jnp.bfloat16)   # -> ResNet module
    feature_channels('resnet50')                      # -> {'C2': 256, ..., 'C5': 2048}
    feature_strides('resnet50')                       # -> {'C2': 4, ..., 'C5': 32}
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn

from vision_jax.models.backbones.resnet import (
    BLOCK_EXPANSION,
    FrozenBatchNorm,
    ResNet,
    ResNetStage,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)
from vision_jax.models.backbones.darknet import Darknet, darknet53
from vision_jax.models.backbones.efficientnet_lite import EfficientNetLite0, efficientnet_lite0, efficientnet_lite0_plan
from vision_jax.models.backbones.mobilenet_v2 import MobileNetV2, mobilenet_v2, mobilenet_v2_plan
from vision_jax.models.backbones.vgg import CHANNEL_MULTIPLIERS, VGG16

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": functools.partial(VGG16, batch_norm=False),
    "vgg16_bn": functools.partial(VGG16, batch_norm=True),
    "darknet53": darknet53,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_lite0": efficientnet_lite0,
}

_INVERTED_RESIDUAL_PLANS = {"mobilenet_v2": mobilenet_v2_plan, "efficientnet_lite0": efficientnet_lite0_plan}
_RESNET_BLOCK = {"resnet18": "basic", "resnet34": "basic", "resnet50": "bottleneck", "resnet101": "bottleneck"}


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {sorted(BACKBONES)}")


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """The backbone module called `name`, with module fields from kwargs (width, dtype, stem...)."""
    _check_name(name)
    return BACKBONES[name](**kwargs)


def feature_channels(name: str, width: int | None = None) -> dict[str, int]:
    """Channels of every output of backbone `name` built with `width` (None: the backbone's own
    default width, 64 for ResNet / VGG, 32 for Darknet-53 and the inverted-residual nets)."""
    _check_name(name)
    if width is None:
        width = build_backbone(name).width
    if name in _RESNET_BLOCK:
        expansion = BLOCK_EXPANSION[_RESNET_BLOCK[name]]
        return {f"C{level}": width * 2 ** (level - 2) * expansion for level in range(2, 6)}
    if name == "darknet53":  # stage s has width * 2**s channels
        return {f"C{level}": width * 2**level for level in range(1, 6)}
    if name in _INVERTED_RESIDUAL_PLANS:  # width = stem channels (32 = the published networks)
        return _INVERTED_RESIDUAL_PLANS[name](width).feature_channels()
    channels = {f"C{block + 1}": width * m for block, m in enumerate(CHANNEL_MULTIPLIERS)}
    channels.update(conv4_3=width * CHANNEL_MULTIPLIERS[3], conv5_3=width * CHANNEL_MULTIPLIERS[4])
    return channels


def feature_strides(name: str, stem: str = "imagenet") -> dict[str, int]:
    """Stride (input pixels per feature pixel) of every output of backbone `name`.

    `stem` applies to ResNets only ('imagenet' or 'cifar'); VGG has no stem choice.
    """
    _check_name(name)
    if name in _RESNET_BLOCK:
        stem_strides = {"imagenet": 4, "cifar": 1}
        if stem not in stem_strides:
            raise ValueError(f"unknown stem {stem!r}; expected one of {list(stem_strides)}")
        return {f"C{level}": stem_strides[stem] * 2 ** (level - 2) for level in range(2, 6)}
    if name in _INVERTED_RESIDUAL_PLANS:
        return {f"C{level}": 2**level for level in range(2, 6)}
    strides = {f"C{level}": 2**level for level in range(1, 6)}
    if name == "darknet53":
        return strides
    strides.update(conv4_3=8, conv5_3=16)
    return strides


__all__ = [
    "BACKBONES",
    "Darknet",
    "EfficientNetLite0",
    "MobileNetV2",
    "FrozenBatchNorm",
    "ResNet",
    "ResNetStage",
    "VGG16",
    "build_backbone",
    "darknet53",
    "efficientnet_lite0",
    "feature_channels",
    "feature_strides",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]

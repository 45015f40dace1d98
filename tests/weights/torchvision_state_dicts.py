"""Random state dicts in torchvision's key layout (names and OIHW shapes of torchvision's
resnet18/34/50/101 and vgg16/vgg16_bn modules, with a `width` to keep tests cheap), written from
torchvision's module definitions, not from vision_jax's layouts.

Values: conv kernels N(0, 2 / fan_out) (torchvision's kaiming init), linear weights N(0, 1 / in),
biases N(0, 0.2), BatchNorm scale U(0.5, 1.5), bias N(0, 0.2), running mean N(0, 0.3), running
var U(0.5, 2), num_batches_tracked an int64 scalar: every statistic and affine is exercised.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

RESNETS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
}


class _Writer:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.sd: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def conv(self, name, out_channels, in_channels, kernel, bias=False):
        std = np.sqrt(2.0 / (out_channels * kernel * kernel))
        self.sd[f"{name}.weight"] = self.rng.normal(0, std, (out_channels, in_channels, kernel, kernel)).astype(
            np.float32
        )
        if bias:
            self.sd[f"{name}.bias"] = self.rng.normal(0, 0.2, out_channels).astype(np.float32)

    def bn(self, name, channels):
        self.sd[f"{name}.weight"] = self.rng.uniform(0.5, 1.5, channels).astype(np.float32)
        self.sd[f"{name}.bias"] = self.rng.normal(0, 0.2, channels).astype(np.float32)
        self.sd[f"{name}.running_mean"] = self.rng.normal(0, 0.3, channels).astype(np.float32)
        self.sd[f"{name}.running_var"] = self.rng.uniform(0.5, 2.0, channels).astype(np.float32)
        self.sd[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)

    def linear(self, name, out_features, in_features):
        self.sd[f"{name}.weight"] = self.rng.normal(0, 1 / np.sqrt(in_features), (out_features, in_features)).astype(
            np.float32
        )
        self.sd[f"{name}.bias"] = self.rng.normal(0, 0.2, out_features).astype(np.float32)


def resnet_state_dict(name: str, rng: np.random.Generator, width: int = 64, num_classes: int = 1000) -> dict:
    """torchvision.models.<name>(num_classes) state dict with `width` (64 in torchvision)."""
    stage_sizes, bottleneck = RESNETS[name]
    expansion = 4 if bottleneck else 1
    w = _Writer(rng)
    w.conv("conv1", width, 3, 7)
    w.bn("bn1", width)
    inplanes = width
    for stage, blocks in enumerate(stage_sizes):
        planes = width * 2**stage
        for index in range(blocks):
            p = f"layer{stage + 1}.{index}"
            stride = 2 if stage > 0 and index == 0 else 1
            if bottleneck:
                w.conv(f"{p}.conv1", planes, inplanes, 1)
                w.bn(f"{p}.bn1", planes)
                w.conv(f"{p}.conv2", planes, planes, 3)
                w.bn(f"{p}.bn2", planes)
                w.conv(f"{p}.conv3", planes * 4, planes, 1)
                w.bn(f"{p}.bn3", planes * 4)
            else:
                w.conv(f"{p}.conv1", planes, inplanes, 3)
                w.bn(f"{p}.bn1", planes)
                w.conv(f"{p}.conv2", planes, planes, 3)
                w.bn(f"{p}.bn2", planes)
            if stride != 1 or inplanes != planes * expansion:
                w.conv(f"{p}.downsample.0", planes * expansion, inplanes, 1)
                w.bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    w.linear("fc", num_classes, inplanes)
    return w.sd


def vgg16_state_dict(
    rng: np.random.Generator, batch_norm: bool, width: int = 64, fc_features: int = 4096, num_classes: int = 1000
) -> dict:
    """torchvision.models.vgg16[_bn] state dict; channels 64/128/256/512 scaled by width / 64."""
    config = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")
    w = _Writer(rng)
    position, in_channels = 0, 3
    for item in config:
        if item == "M":
            position += 1
            continue
        out_channels = width * item
        w.conv(f"features.{position}", out_channels, in_channels, 3, bias=True)
        if batch_norm:
            w.bn(f"features.{position + 1}", out_channels)
        position += 3 if batch_norm else 2
        in_channels = out_channels
    w.linear("classifier.0", fc_features, in_channels * 7 * 7)
    w.linear("classifier.3", fc_features, fc_features)
    w.linear("classifier.6", num_classes, fc_features)
    return w.sd

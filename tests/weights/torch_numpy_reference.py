"""Float64 NumPy forward passes that read PyTorch state dicts directly, for the converter tests.

Written from torchvision's model definitions (ResNet v1.5, VGG-16 configuration D, MobileNetV2)
and EfficientNet-PyTorch's (the EfficientNet-Lite0 port), in torch's own layout: NCHW images,
OIHW kernels, [out, in] linear weights, flatten in (c, h, w) order, and the file's own key names.
Nothing here imports vision_jax, so a wrong name map, transpose or flatten order in the
converters shows up as a difference.

Every function takes `sd` ({key: array}) and images [B, 3, H, W] and returns logits [B, classes].
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# EfficientNet-Lite0 blocks: (repeats, kernel, stride, expand ratio, in, out), 'r1_k3_s11_e1_i32_o16', ...
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _f64(sd, key):
    return np.asarray(sd[key], np.float64)


def conv2d(x, weight, stride=1, padding=(0, 0, 0, 0), groups=1, bias=None):
    """torch.nn.functional.conv2d on NCHW after zero padding (top, bottom, left, right)."""
    top, bottom, left, right = padding
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_channels, in_per_group, kh, kw = weight.shape
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # [B, C, H', W', kh, kw]
    if groups == 1:
        out = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    elif groups == x.shape[1] and in_per_group == 1 and out_channels == groups:
        out = np.einsum("bcyxij,cij->bcyx", windows, weight[:, 0])
    else:
        raise NotImplementedError("only dense and depthwise convolutions are needed here")
    return out if bias is None else out + bias[None, :, None, None]


def batch_norm(x, sd, prefix, eps):
    """Inference BatchNorm2d: running statistics."""
    mean, var = _f64(sd, f"{prefix}.running_mean"), _f64(sd, f"{prefix}.running_var")
    scale, shift = _f64(sd, f"{prefix}.weight"), _f64(sd, f"{prefix}.bias")
    inv = scale / np.sqrt(var + eps)
    return x * inv[None, :, None, None] + (shift - mean * inv)[None, :, None, None]


def relu(x):
    return np.maximum(x, 0.0)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def max_pool(x, kernel, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    return sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(-2, -1))


def adaptive_avg_pool(x, size):
    """AdaptiveAvgPool2d: bin i covers [floor(i * n / size), ceil((i + 1) * n / size))."""
    b, c, h, w = x.shape
    out = np.empty((b, c, size, size))
    for i in range(size):
        r0, r1 = (i * h) // size, math.ceil((i + 1) * h / size)
        for j in range(size):
            c0, c1 = (j * w) // size, math.ceil((j + 1) * w / size)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def linear(x, sd, prefix):
    return x @ _f64(sd, f"{prefix}.weight").T + _f64(sd, f"{prefix}.bias")


def _sym(pad):
    return (pad, pad, pad, pad)


def resnet_logits(sd, images):
    """torchvision ResNet (BasicBlock if the blocks have no conv3, else Bottleneck v1.5)."""
    bottleneck = "layer1.0.conv3.weight" in sd
    x = conv2d(images, _f64(sd, "conv1.weight"), 2, _sym(3))
    x = max_pool(relu(batch_norm(x, sd, "bn1", 1e-5)), 3, 2, 1)
    for stage in range(1, 5):
        index = 0
        while f"layer{stage}.{index}.conv1.weight" in sd:
            p = f"layer{stage}.{index}"
            stride = 2 if stage > 1 and index == 0 else 1
            if bottleneck:
                y = relu(batch_norm(conv2d(x, _f64(sd, f"{p}.conv1.weight")), sd, f"{p}.bn1", 1e-5))
                y = relu(batch_norm(conv2d(y, _f64(sd, f"{p}.conv2.weight"), stride, _sym(1)), sd, f"{p}.bn2", 1e-5))
                y = batch_norm(conv2d(y, _f64(sd, f"{p}.conv3.weight")), sd, f"{p}.bn3", 1e-5)
            else:
                y = relu(batch_norm(conv2d(x, _f64(sd, f"{p}.conv1.weight"), stride, _sym(1)), sd, f"{p}.bn1", 1e-5))
                y = batch_norm(conv2d(y, _f64(sd, f"{p}.conv2.weight"), 1, _sym(1)), sd, f"{p}.bn2", 1e-5)
            if f"{p}.downsample.0.weight" in sd:
                x = batch_norm(conv2d(x, _f64(sd, f"{p}.downsample.0.weight"), stride), sd, f"{p}.downsample.1", 1e-5)
            x = relu(y + x)
            index += 1
    return linear(x.mean(axis=(2, 3)), sd, "fc")


def vgg16_logits(sd, images):
    """torchvision vgg16 / vgg16_bn (BN after every conv when the file has features.1.running_mean)."""
    batch_norm_layers = "features.1.running_mean" in sd
    x, position = images, 0
    for item in VGG16_CONFIG:
        if item == "M":
            x = max_pool(x, 2, 2, 0)
            position += 1
            continue
        x = conv2d(x, _f64(sd, f"features.{position}.weight"), 1, _sym(1), bias=_f64(sd, f"features.{position}.bias"))
        if batch_norm_layers:
            x = batch_norm(x, sd, f"features.{position + 1}", 1e-5)
        x = relu(x)
        position += 3 if batch_norm_layers else 2
    x = adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)  # torch.flatten of NCHW: (c, h, w) order
    x = relu(linear(x, sd, "classifier.0"))
    x = relu(linear(x, sd, "classifier.3"))
    return linear(x, sd, "classifier.6")


def mobilenet_v2_logits(sd, images):
    """torchvision mobilenet_v2: Conv2dNormActivation(ReLU6) blocks, padding (k - 1) // 2."""
    x = relu6(batch_norm(conv2d(images, _f64(sd, "features.0.0.weight"), 2, _sym(1)), sd, "features.0.1", 1e-5))
    index = 1
    for expand_ratio, _, repeats, first_stride in MOBILENET_V2_SETTINGS:
        for repeat in range(repeats):
            p = f"features.{index}.conv"
            stride = first_stride if repeat == 0 else 1
            y, position = x, 0
            if expand_ratio != 1:
                y = relu6(batch_norm(conv2d(y, _f64(sd, f"{p}.0.0.weight")), sd, f"{p}.0.1", 1e-5))
                position = 1
            weight = _f64(sd, f"{p}.{position}.0.weight")
            y = conv2d(y, weight, stride, _sym(1), groups=weight.shape[0])
            y = relu6(batch_norm(y, sd, f"{p}.{position}.1", 1e-5))
            y = batch_norm(conv2d(y, _f64(sd, f"{p}.{position + 1}.weight")), sd, f"{p}.{position + 2}", 1e-5)
            x = y + x if stride == 1 and y.shape == x.shape else y
            index += 1
    x = relu6(batch_norm(conv2d(x, _f64(sd, f"features.{index}.0.weight")), sd, f"features.{index}.1", 1e-5))
    return linear(x.mean(axis=(2, 3)), sd, "classifier.1")


def tf_same_padding(size, kernel, stride):
    """TensorFlow 'SAME' (EfficientNet-PyTorch's Conv2dStaticSamePadding): (before, after)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_conv(x, weight, stride, groups=1):
    kernel = weight.shape[-1]
    top, bottom = tf_same_padding(x.shape[2], kernel, stride)
    left, right = tf_same_padding(x.shape[3], kernel, stride)
    return conv2d(x, weight, stride, (top, bottom, left, right), groups)


def efficientnet_lite0_logits(sd, images):
    """EfficientNet-PyTorch's efficientnet-lite0: MBConv without SE, ReLU6, BN eps 1e-3, TF SAME
    padding, skip when stride 1 and in == out channels."""
    eps = 1e-3
    x = relu6(batch_norm(_same_conv(images, _f64(sd, "_conv_stem.weight"), 2), sd, "_bn0", eps))
    index = 0
    for repeats, _, first_stride, expand_ratio, in_channels, out_channels in LITE0_BLOCKS:
        for repeat in range(repeats):
            p = f"_blocks.{index}"
            stride = first_stride if repeat == 0 else 1
            block_in = in_channels if repeat == 0 else out_channels
            y = x
            if expand_ratio != 1:
                y = relu6(batch_norm(_same_conv(y, _f64(sd, f"{p}._expand_conv.weight"), 1), sd, f"{p}._bn0", eps))
            weight = _f64(sd, f"{p}._depthwise_conv.weight")
            y = relu6(batch_norm(_same_conv(y, weight, stride, groups=weight.shape[0]), sd, f"{p}._bn1", eps))
            y = batch_norm(_same_conv(y, _f64(sd, f"{p}._project_conv.weight"), 1), sd, f"{p}._bn2", eps)
            x = y + x if stride == 1 and block_in == out_channels else y
            index += 1
    x = relu6(batch_norm(_same_conv(x, _f64(sd, "_conv_head.weight"), 1), sd, "_bn1", eps))
    return linear(x.mean(axis=(2, 3)), sd, "_fc")

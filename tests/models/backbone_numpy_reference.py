"""Float64 NumPy re-implementations of ResNet v1.5 and VGG-16, written from the papers and
torchvision's published layer specs (not from vision_jax's code), for the reference tests.

The only thing shared with the Flax modules is where weights live: a nested dict with the Flax
variable names (params[...]['kernel'] as [kh, kw, C_in, C_out], BatchNorm 'scale'/'bias' and
batch_stats 'mean'/'var').
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: int, padding: int, bias: np.ndarray | None = None) -> np.ndarray:
    """Zero-padded convolution by im2col: x [B,H,W,C], kernel [kh,kw,C,O] -> [B,H',W',O]."""
    kh, kw, c_in, c_out = kernel.shape
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    b, oh, ow = windows.shape[:3]
    # windows: [B, H', W', C, kh, kw] -> columns ordered (kh, kw, C) like the kernel's rows.
    columns = windows.transpose(0, 1, 2, 4, 5, 3).reshape(b * oh * ow, kh * kw * c_in)
    out = (columns @ kernel.reshape(kh * kw * c_in, c_out)).reshape(b, oh, ow, c_out)
    return out if bias is None else out + bias


def max_pool(x: np.ndarray, window: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> np.ndarray:
    """torch.nn.MaxPool2d semantics on NHWC: padding with -inf; ceil_mode adds a last window
    (padded with -inf) when the input does not divide evenly."""
    pad_low = pad_high = padding
    extra = [0, 0]
    if ceil_mode:
        for axis in (0, 1):
            size = x.shape[1 + axis] + 2 * padding
            out_floor = (size - window) // stride + 1
            out_ceil = -(-(size - window) // stride) + 1
            extra[axis] = (out_ceil - out_floor) * stride
    x = np.pad(
        x, ((0, 0), (pad_low, pad_high + extra[0]), (pad_low, pad_high + extra[1]), (0, 0)), constant_values=-np.inf
    )
    windows = sliding_window_view(x, (window, window), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def adaptive_avg_pool(x: np.ndarray, out: int) -> np.ndarray:
    """torch AdaptiveAvgPool2d on NHWC, bin i = [floor(i*n/out), ceil((i+1)*n/out))."""
    b, h, w, c = x.shape
    result = np.zeros((b, out, out, c))
    for i in range(out):
        h0, h1 = (i * h) // out, int(np.ceil((i + 1) * h / out))
        for j in range(out):
            w0, w1 = (j * w) // out, int(np.ceil((j + 1) * w / out))
            result[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return result


class ReferenceNet:
    """Holds the weights; runs conv/BN layers by variable path; records new BN statistics."""

    def __init__(
        self, params: dict, batch_stats: dict | None, train: bool, epsilon: float = 1e-5, momentum: float = 0.9
    ):
        self.params = params
        self.batch_stats = batch_stats or {}
        self.train = train
        self.epsilon = epsilon
        self.momentum = momentum
        self.new_batch_stats: dict = {}

    @staticmethod
    def _get(tree: dict, path: tuple[str, ...]) -> dict:
        for key in path:
            tree = tree[key]
        return tree

    def conv(self, x: np.ndarray, path: tuple[str, ...], stride: int, padding: int) -> np.ndarray:
        layer = self._get(self.params, path)
        bias = layer.get("bias")
        return conv2d(
            x,
            np.asarray(layer["kernel"], np.float64),
            stride,
            padding,
            None if bias is None else np.asarray(bias, np.float64),
        )

    def batch_norm(self, x: np.ndarray, path: tuple[str, ...]) -> np.ndarray:
        affine = self._get(self.params, path)
        if self.train:
            # Batch statistics over (B, H, W); biased variance, as Flax and torch normalise with.
            mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
            old = self._get(self.batch_stats, path)
            node = self.new_batch_stats
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = {
                "mean": self.momentum * np.asarray(old["mean"], np.float64) + (1 - self.momentum) * mean,
                "var": self.momentum * np.asarray(old["var"], np.float64) + (1 - self.momentum) * var,
            }
        else:
            stats = self._get(self.batch_stats, path)
            mean, var = np.asarray(stats["mean"], np.float64), np.asarray(stats["var"], np.float64)
        return (x - mean) / np.sqrt(var + self.epsilon) * np.asarray(affine["scale"], np.float64) + np.asarray(
            affine["bias"], np.float64
        )


def resnet_v15(
    images: np.ndarray, net: ReferenceNet, stage_sizes: tuple[int, ...], block: str, width: int, stem: str = "imagenet"
) -> dict[str, np.ndarray]:
    """ResNet v1.5 forward pass (He et al. 2016; stride on the bottleneck's 3x3 conv)."""
    expansion = {"basic": 1, "bottleneck": 4}[block]
    x = np.asarray(images, np.float64)
    if stem == "imagenet":
        x = relu(net.batch_norm(net.conv(x, ("conv1",), stride=2, padding=3), ("bn1",)))
        x = max_pool(x, window=3, stride=2, padding=1)
    else:
        x = relu(net.batch_norm(net.conv(x, ("conv1",), stride=1, padding=1), ("bn1",)))
    in_channels = width
    features = {}
    for stage, num_blocks in enumerate(stage_sizes):
        planes = width * 2**stage
        out_channels = planes * expansion
        for index in range(num_blocks):
            stride = 2 if (stage > 0 and index == 0) else 1
            path = (f"layer{stage + 1}", f"block{index}")
            if block == "basic":
                y = relu(net.batch_norm(net.conv(x, path + ("conv1",), stride, 1), path + ("bn1",)))
                y = net.batch_norm(net.conv(y, path + ("conv2",), 1, 1), path + ("bn2",))
            else:
                y = relu(net.batch_norm(net.conv(x, path + ("conv1",), 1, 0), path + ("bn1",)))
                y = relu(net.batch_norm(net.conv(y, path + ("conv2",), stride, 1), path + ("bn2",)))
                y = net.batch_norm(net.conv(y, path + ("conv3",), 1, 0), path + ("bn3",))
            if stride != 1 or in_channels != out_channels:
                shortcut = net.batch_norm(
                    net.conv(x, path + ("downsample_conv",), stride, 0), path + ("downsample_bn",)
                )
            else:
                shortcut = x
            x = relu(y + shortcut)
            in_channels = out_channels
        features[f"C{stage + 2}"] = x
    return features


def vgg16(images: np.ndarray, net: ReferenceNet, batch_norm: bool, ceil_mode: bool = False) -> dict[str, np.ndarray]:
    """VGG-16 configuration D: conv3x3 (pad 1, bias) [+ BN] + ReLU; 2x2/2 max-pool per block."""
    x = np.asarray(images, np.float64)
    features = {}
    for block, num_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for index in range(1, num_convs + 1):
            x = net.conv(x, (f"conv{block}_{index}",), stride=1, padding=1)
            if batch_norm:
                x = net.batch_norm(x, (f"bn{block}_{index}",))
            x = relu(x)
        if block in (4, 5):
            features[f"conv{block}_3"] = x
        x = max_pool(x, window=2, stride=2, ceil_mode=ceil_mode)
        features[f"C{block}"] = x
    return features

"""YOLO heads: v1's conv + fully connected grid head, v3's FPN-like neck with three output convs.

Convolutions are conv (no bias) + BatchNorm + LeakyReLU(0.1) (`ConvBNLeaky`, darknet's
`batch_normalize=1, activation=leaky`); the output layers are plain convs / dense layers with
bias and linear activation, as in darknet's cfgs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.backbones.darknet import LEAKY_SLOPE, ConvBNLeaky

# Objectness starts at p = 0.01 (RetinaNet's prior, Lin et al. 2017): with thousands of negatives
# per image, p = 0.5 at the start would give a first loss dominated by them.
OBJECTNESS_PRIOR = 0.01


YOLOV1_OUTPUT_LAYERS = ("fully_connected", "convolutional")


def _grid_stride(feature_shape: Sequence[int], grid_size: int) -> int:
    """Stride of the second conv that brings an [h, w] feature map to the S x S grid (1 or 2)."""
    for stride in (1, 2):
        if tuple(feature_shape) == (grid_size * stride, grid_size * stride):
            return stride
    raise ValueError(
        f"the convolutional YOLOv1 output needs a feature map of S x S or 2S x 2S cells (S = grid_size = "
        f"{grid_size}), got {tuple(feature_shape)}: change config.model.yolo.feature or grid_size"
    )


class YOLOv1Head(nn.Module):
    """Redmon et al. 2016's head: four 3x3 convs (the second with stride 2), flatten, a hidden
    fully connected layer with dropout, and a linear layer to S x S x (5 B + C).

    The paper's convs have no normalisation; BatchNorm here (YOLOv2's change) lets the head train
    from scratch with Adam. Dropout draws from the 'sampling' RNG stream (the detection task's).

    output_layer 'convolutional' replaces flatten + FC + dropout + FC by a 1x1 conv on the S x S map
    (YOLOv2's change, without its anchors): every cell then reads the same weights, instead of
    each cell of the FC layer learning its classes from the few objects that fall in it. The
    second conv's stride is 1 or 2, whichever brings the feature map to S x S.

    Widths and dropout come from YOLOv1Settings (head_channels, fc_dim, dropout, output_layer),
    where their defaults live; bn_axis_name is the BatchNorms' cross-replica axis (None: per device).

    __call__(features [B, h, w, c], train) -> [B, S, S, 5 B + C] raw outputs, per cell
    (B x (x, y, sqrt_w, sqrt_h) logits, B confidence logits, C class logits).
    """

    grid_size: int
    boxes_per_cell: int
    num_classes: int
    channels: int
    fc_dim: int
    dropout: float
    output_layer: str = "fully_connected"
    dtype: Any = None
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.output_layer not in YOLOV1_OUTPUT_LAYERS:
            raise ValueError(f"YOLOv1Head output_layer={self.output_layer!r} is not one of {YOLOV1_OUTPUT_LAYERS}")
        convolutional = self.output_layer == "convolutional"
        per_cell = 5 * self.boxes_per_cell + self.num_classes
        conv = functools.partial(ConvBNLeaky, dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        second_stride = _grid_stride(x.shape[1:3], self.grid_size) if convolutional else 2
        for index, stride in enumerate((1, second_stride, 1, 1)):
            x = conv(self.channels, 3, strides=stride, name=f"conv{index + 1}")(x, train)
        if convolutional:
            return nn.Conv(
                per_cell, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.normal(0.01), name="output"
            )(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.leaky_relu(nn.Dense(self.fc_dim, dtype=self.dtype, name="fc1")(x), LEAKY_SLOPE)
        x = nn.Dropout(self.dropout, rng_collection="sampling", deterministic=not train)(x)
        outputs = self.grid_size * self.grid_size * per_cell
        x = nn.Dense(outputs, dtype=self.dtype, kernel_init=nn.initializers.normal(0.01), name="fc2")(x)
        return x.reshape(x.shape[0], self.grid_size, self.grid_size, -1)


def _output_bias_init(num_priors: int, num_classes: int):
    """Bias of the v3 output conv: 0 everywhere except objectness, log(p / (1 - p))."""

    def init(key, shape, dtype=jnp.float32):
        bias = np.zeros((num_priors, 5 + num_classes), np.float32)
        bias[:, 4] = np.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))
        return jnp.asarray(bias.reshape(shape), dtype)

    return init


class YOLOv3Head(nn.Module):
    """YOLOv3's neck and outputs (darknet's yolov3.cfg), coarsest level first.

    Level 0 takes the coarsest feature map: five convs alternating 1x1 (c channels) and 3x3 (2c),
    then a 3x3 (2c) conv and a 1x1 output conv to A (5 + C). Each next level takes the previous
    level's five-conv output through a 1x1 conv (c/2), nearest 2x upsampling, concatenation with
    its own (finer) feature map, and the same block with c halved.

    __call__(features: list of [B, H_l, W_l, C_l] coarsest first, H_{l+1} = 2 H_l; train) ->
    list of [B, H_l, W_l, A_l, 5 + C] raw outputs (t_x, t_y, t_w, t_h, t_o, t_c...).

    c is YOLOv3Settings.neck_channels (its default lives there); bn_axis_name is the BatchNorms'
    cross-replica axis (None: per device).
    """

    num_classes: int
    priors_per_level: Sequence[int]
    channels: int
    dtype: Any = None
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, features: Sequence[jax.Array], train: bool) -> list[jax.Array]:
        if len(features) != len(self.priors_per_level):
            raise ValueError(f"YOLOv3Head got {len(features)} feature maps for {len(self.priors_per_level)} levels")
        conv = functools.partial(ConvBNLeaky, dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        outputs, route = [], None
        for level, (x, num_priors) in enumerate(zip(features, self.priors_per_level)):
            channels = self.channels // 2**level
            if route is not None:
                route = conv(channels, 1, name=f"lateral{level}")(route, train)
                route = jnp.repeat(jnp.repeat(route, 2, axis=1), 2, axis=2)
                if route.shape[1:3] != x.shape[1:3]:
                    raise ValueError(
                        f"YOLOv3Head level {level}: upsampled {route.shape[1:3]} != feature {x.shape[1:3]}; "
                        f"the input side must be a multiple of the coarsest stride"
                    )
                x = jnp.concatenate([route, x.astype(route.dtype)], axis=-1)
            for index in range(5):
                kernel, width = (1, channels) if index % 2 == 0 else (3, 2 * channels)
                x = conv(width, kernel, name=f"level{level}_conv{index + 1}")(x, train)
            route = x
            y = conv(2 * channels, 3, name=f"level{level}_conv6")(x, train)
            y = nn.Conv(
                num_priors * (5 + self.num_classes),
                (1, 1),
                dtype=self.dtype,
                kernel_init=nn.initializers.normal(0.01),
                bias_init=_output_bias_init(num_priors, self.num_classes),
                name=f"level{level}_output",
            )(y)
            outputs.append(y.reshape(*y.shape[:3], num_priors, 5 + self.num_classes))
        return outputs

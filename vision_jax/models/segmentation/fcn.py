"""Fully convolutional networks for semantic segmentation: FCN-32s, FCN-16s, FCN-8s (Long et al., 2015).

    backbone C5 [B, H/32, W/32, C] -> [fc6 (k x k conv) -> ReLU -> dropout -> fc7 (1x1) -> ReLU -> dropout]
        -> score_C5 (1x1, one channel per class) [B, H/32, W/32, K]
    FCN-32s: score_C5 -> fixed bilinear x32 upsampling -> logits [B, H, W, K]
    FCN-16s: up2(score_C5) + score_C4(C4) -> fixed bilinear x16
    FCN-8s:  up2(up2(score_C5) + score_C4(C4)) + score_C3(C3) -> fixed bilinear x8

`up2` is a learned transposed convolution initialised to bilinear x2 (`BilinearConvTranspose`); the
final upsampling is fixed bilinear unless `FCNSettings.learn_final_upsampling` (the paper fixes it).
fc6/fc7 exist only with `FCNSettings.head_features` > 0 (the paper's VGG-16: 4096, kernel 7).
Score layers are 1x1 convolutions initialised to zero (the paper: random init gave neither better
nor faster results), so a fresh FCN-8s computes exactly what a fresh FCN-32s does and the skips
learn to add detail. Skip names: VGG-16 C3/C4/C5 = pool3/pool4/pool5, ResNet C3/C4/C5 =
conv3_x/conv4_x/conv5_x. The upsampling factors are read from the feature shapes, so a backbone
with other strides (e.g. a ResNet with the 'cifar' stem, C5 at stride 8) works too.

Sizes that are not multiples of 32. Caffe's FCN pads the input by 100 pixels and crops every skip
and the output back into alignment. Here the input is padded at the bottom and right (with zeros:
the mean of a normalised image) to a multiple of `size_multiple` (32, the stride of C5), so every
feature map is exactly 1/stride of the padded input and the skips align with no cropping; the logits
are then cropped back to the input's [H, W]. Padding is at the far edges only, so pixel (r, c) of the
output is pixel (r, c) of the input.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.classifier import select_feature
from vision_jax.models.segmentation.bilinear_upsampling import BilinearConvTranspose
from vision_jax.models.segmentation.settings import FCNSettings

# Backbone features fused by each variant, coarsest first.
VARIANT_FEATURES: dict[str, tuple[str, ...]] = {
    "32s": ("C5",),
    "16s": ("C5", "C4"),
    "8s": ("C5", "C4", "C3"),
}


def pad_to_multiple(images: jax.Array, multiple: int) -> jax.Array:
    """Zero-pads [B, H, W, C] at the bottom and right to sides that are multiples of `multiple`."""
    height, width = images.shape[1], images.shape[2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return jnp.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))


def integer_factor(larger: int, smaller: int, what: str) -> int:
    """larger / smaller when it is a whole number; ValueError naming `what` otherwise."""
    if smaller <= 0 or larger % smaller:
        raise ValueError(
            f"{what}: size {larger} is not a whole multiple of {smaller}; pad the input to a "
            "multiple of the backbone stride (size_multiple)"
        )
    return larger // smaller


class FCN(nn.Module):
    """FCN-32s / 16s / 8s on any backbone returning 'C3', 'C4', 'C5'.

    Attributes:
      backbone: module (images, train) -> dict of features.
      num_classes: output channels (semantic classes, background included).
      variant: '32s', '16s' or '8s' (from the model name: fcn32s, fcn16s, fcn8s).
      settings: `FCNSettings` (config.model.segmentation): fc6/fc7 (`head_features`, 0 = none, then
        C5 is scored directly, the usual choice for ResNets; `head_kernel_size`; `dropout_rate`, which
        needs rngs={'dropout': key} when training) and `learn_final_upsampling`.
      size_multiple: inputs are zero-padded to a multiple of this (module docstring); 32 for stride-32
        backbones.
      dtype: compute dtype; logits are float32.

    __call__(images: float32 [B, H, W, 3] (any H, W), train: bool) -> logits float32 [B, H, W, num_classes].
    """

    backbone: nn.Module
    num_classes: int
    variant: str = "8s"
    settings: FCNSettings = FCNSettings()
    size_multiple: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        if self.variant not in VARIANT_FEATURES:
            raise ValueError(f"unknown FCN variant {self.variant!r}; expected one of {list(VARIANT_FEATURES)}")
        if images.ndim != 4:
            raise ValueError(f"FCN expects images [B, H, W, C], got shape {images.shape}")
        height, width = images.shape[1], images.shape[2]
        padded = pad_to_multiple(images, self.size_multiple)
        features = self.backbone(padded, train=train)
        names = VARIANT_FEATURES[self.variant]

        s = self.settings
        x = select_feature(features, names[0])
        if s.head_features:
            x = nn.Conv(s.head_features, (s.head_kernel_size,) * 2, padding="SAME", dtype=self.dtype, name="fc6")(x)
            x = nn.Dropout(s.dropout_rate, deterministic=not train)(nn.relu(x))
            x = nn.Conv(s.head_features, (1, 1), dtype=self.dtype, name="fc7")(x)
            x = nn.Dropout(s.dropout_rate, deterministic=not train)(nn.relu(x))
        score = self._score(x, names[0])
        for name in names[1:]:
            skip = select_feature(features, name)
            factor = integer_factor(skip.shape[1], score.shape[1], f"FCN skip {name}")
            if skip.shape[2] != score.shape[2] * factor:
                raise ValueError(f"FCN skip {name}: width {skip.shape[2]} is not {factor} x {score.shape[2]}")
            score = BilinearConvTranspose(factor, trainable=True, dtype=self.dtype, name=f"up_to_{name}")(score)
            score = score + self._score(skip, name)
        factor = integer_factor(padded.shape[1], score.shape[1], "FCN final upsampling")
        logits = BilinearConvTranspose(
            factor, trainable=s.learn_final_upsampling, dtype=self.dtype, name="final_upsampling"
        )(score)
        return logits[:, :height, :width].astype(jnp.float32)

    def _score(self, x: jax.Array, name: str) -> jax.Array:
        """1x1 class-score layer, zero-initialised (kernel and bias)."""
        return nn.Conv(
            self.num_classes, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.zeros, name=f"score_{name}"
        )(x)

"""Convolutional autoencoder (CAE): a backbone encodes an image into a feature map, a decoder of
learned x2 upsamplings reconstructs it; and the copy of its encoder into a segmenter.

    images [B, H, W, 3] -> backbone -> code = features[code_feature] [B, H/s, W/s, C], s = code_stride
      -> (x2 transposed conv, bilinear init -> 3x3 conv -> BN -> ReLU) x log2(s), channels halving
         down to `decoder_min_features`
      -> 3x3 conv to 3 channels -> sigmoid -> reconstruction float32 [B, H, W, 3] in [0, 1]

`code_feature`, `code_stride` and `decoder_min_features` are the fields of `AutoencoderSettings`
(config.model.segmentation with model 'conv_autoencoder').

The encoder is an ordinary backbone (`vision_jax.models.backbones`), stored under the parameter
name `backbone`, exactly where FCN keeps its backbone: `copy_encoder_params` moves a trained
encoder into an FCN (or, for a VGG16-BN encoder, into SegNet's `encoder`) as an unsupervised
initialisation. Inputs are zero-padded at the bottom/right to a multiple of the code's stride and the
reconstruction cropped back (as in vision_jax.models.segmentation.fcn).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.backbones.resnet import conv_kernel_init
from vision_jax.models.classifier import select_feature
from vision_jax.models.segmentation.bilinear_upsampling import BilinearConvTranspose
from vision_jax.models.segmentation.fcn import integer_factor, pad_to_multiple
from vision_jax.models.segmentation.settings import AutoencoderSettings


class ConvAutoencoder(nn.Module):
    """Backbone encoder + upsampling decoder -> reconstruction in [0, 1].

    Attributes:
      backbone: module (images, train) -> dict of features; its `settings.code_feature` is the code.
      settings: `AutoencoderSettings` (config.model.segmentation): `code_feature` (which backbone
        output is the code, 'C4': stride 16 for VGG16/ResNet), `code_stride` (its stride, a power of
        2; inputs are padded to a multiple of it and the decoder upsamples by it) and
        `decoder_min_features` (the decoder halves channels per x2 step, down to this many).
      dtype: compute dtype; the reconstruction is float32.
      bn_axis_name: the decoder's BatchNorm cross-replica axis (vision_jax.models.from_config.bn_axis_name;
        None: per-device statistics); the backbone's own BatchNorms get theirs from the builder.

    __call__(images float32 [B, H, W, 3] (normalised), train) -> float32 [B, H, W, 3] in [0, 1].
    """

    backbone: nn.Module
    settings: AutoencoderSettings = AutoencoderSettings()
    dtype: Any = None
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"ConvAutoencoder expects images [B, H, W, C], got shape {images.shape}")
        feature, stride = self.settings.code_feature, self.settings.code_stride
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"config.model.segmentation.code_stride={stride} must be a power of 2")
        height, width = images.shape[1], images.shape[2]
        padded = pad_to_multiple(images, stride)
        x = select_feature(self.backbone(padded, train=train), feature, "config.model.segmentation.code_feature")
        factor = integer_factor(padded.shape[1], x.shape[1], f"config.model.segmentation.code_feature={feature!r}")
        if factor != stride:
            raise ValueError(
                f"config.model.segmentation.code_feature={feature!r} has stride {factor}, but "
                f"config.model.segmentation.code_stride={stride}"
            )
        features = x.shape[-1]
        for step in range(factor.bit_length() - 1):
            x = BilinearConvTranspose(2, trainable=True, dtype=self.dtype, name=f"up{step + 1}")(x)
            features = max(features // 2, self.settings.decoder_min_features)
            x = nn.Conv(
                features,
                (3, 3),
                padding="SAME",
                use_bias=False,
                dtype=self.dtype,
                kernel_init=conv_kernel_init,
                name=f"conv{step + 1}",
            )(x)
            x = nn.BatchNorm(
                use_running_average=not train, dtype=self.dtype, axis_name=self.bn_axis_name, name=f"bn{step + 1}"
            )(x)
            x = nn.relu(x)
        x = nn.Conv(3, (3, 3), padding="SAME", dtype=self.dtype, name="to_image")(x)
        return jax.nn.sigmoid(x.astype(jnp.float32))[:, :height, :width]


def _shape_tree(tree) -> dict:
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def copy_encoder_params(
    source_variables: Mapping[str, Any],
    target_variables: Mapping[str, Any],
    source_key: str = "backbone",
    target_key: str = "backbone",
) -> dict[str, Any]:
    """Returns target_variables with the sub-tree `target_key` of every collection (params,
    batch_stats) replaced by the sub-tree `source_key` of source_variables.

    Use: initialise a segmenter from a trained autoencoder (same backbone name, width and stem):

        fcn_vars = copy_encoder_params(cae_vars, fcn_vars)                       # FCN's backbone
        segnet_vars = copy_encoder_params(cae_vars, segnet_vars, target_key='encoder')  # VGG16-BN CAE

    Every copied array is the source's (not a copy of its values into a new layout), so the result is
    exact. The other parts of target_variables (FCN's score layers, SegNet's decoder) are kept.
    Raises ValueError when a collection lacks the key, or when the two sub-trees differ in structure or
    in any array shape (naming the first differing paths), e.g. a width or backbone mismatch.
    """
    result = {name: dict(collection) for name, collection in target_variables.items()}
    # 'params' first, so a width or backbone mismatch is reported on the kernels.
    for collection in sorted(target_variables, key=lambda name: name != "params"):
        target = target_variables[collection]
        source = source_variables.get(collection)
        if target_key not in target:
            raise ValueError(f"target variables[{collection!r}] has no {target_key!r}; it has {sorted(target)}")
        if source is None or source_key not in source:
            raise ValueError(
                f"source variables have no {collection!r}/{source_key!r} to copy into {collection!r}/{target_key!r}"
            )
        want, got = _shape_tree(target[target_key]), _shape_tree(source[source_key])
        if want != got:
            missing = sorted(set(want) - set(got))[:3]
            extra = sorted(set(got) - set(want))[:3]
            shapes = [f"{k}: {got[k]} vs {want[k]}" for k in sorted(set(want) & set(got)) if got[k] != want[k]][:3]
            raise ValueError(
                f"encoder {collection!r} trees differ (source {source_key!r} -> target {target_key!r}): "
                f"missing in source {missing}, extra in source {extra}, shape mismatches {shapes}"
            )
        result[collection][target_key] = source[source_key]
    return result

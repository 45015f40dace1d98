"""Builders of the segmentation family from a config: `config.model.*` backbone keys +
`config.model.segmentation` (FCNSettings, SegNetSettings or AutoencoderSettings by model name)."""

from __future__ import annotations

import ml_collections

from vision_jax.models.from_config import backbone_from_config, bn_axis_name, compute_dtype
from vision_jax.models.segmentation.autoencoder import ConvAutoencoder
from vision_jax.models.segmentation.fcn import FCN
from vision_jax.models.segmentation.segnet import SegNet
from vision_jax.models.segmentation.settings import AutoencoderSettings, FCNSettings, SegNetSettings
from vision_jax.models.settings import settings_from_config

GROUP = "segmentation"
FCN_VARIANTS = {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s"}


def _settings(config: ml_collections.ConfigDict, cls):
    return settings_from_config(cls, config.model.get(GROUP), f"config.model.{GROUP}")


def build_fcn(config: ml_collections.ConfigDict, num_classes: int) -> FCN:
    """FCN-32s / 16s / 8s by config.model.name, on the backbone of config.model.backbone."""
    return FCN(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        variant=FCN_VARIANTS[config.model.name],
        settings=_settings(config, FCNSettings),
        dtype=compute_dtype(config.model),
    )


def build_segnet(config: ml_collections.ConfigDict, num_classes: int) -> SegNet:
    """SegNet with its own encoder of config.model.width."""
    return SegNet(
        num_classes=num_classes,
        width=int(config.model.width),
        settings=_settings(config, SegNetSettings),
        dtype=compute_dtype(config.model),
        bn_axis_name=bn_axis_name(config.model),
    )


def build_autoencoder(config: ml_collections.ConfigDict, num_classes: int | None = None) -> ConvAutoencoder:
    """The convolutional autoencoder (num_classes is unused: it reconstructs images)."""
    del num_classes
    return ConvAutoencoder(
        backbone=backbone_from_config(config.model),
        settings=_settings(config, AutoencoderSettings),
        dtype=compute_dtype(config.model),
        bn_axis_name=bn_axis_name(config.model),
    )

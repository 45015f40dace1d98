"""Builder of the SSD family from a config: the shared `config.model.*` keys (backbone, width, dtype,
cross_replica_bn, ...) + the `config.model.ssd` group (`SSDSettings`)."""

from __future__ import annotations

import ml_collections

from vision_jax.models.backbones.vgg import VGG16
from vision_jax.models.from_config import backbone_from_config, bn_axis_name, compute_dtype
from vision_jax.models.settings import settings_from_config
from vision_jax.models.ssd.features import SSDResNetFeatures, SSDVGGFeatures
from vision_jax.models.ssd.model import SSD
from vision_jax.models.ssd.settings import SSDSettings

GROUP = "ssd"


def build_ssd(config: ml_collections.ConfigDict, num_classes: int) -> SSD:
    """The SSD of `config.model` (backbone keys + the `ssd` group) for `num_classes` classes."""
    m = config.model
    s = settings_from_config(SSDSettings, m.get(GROUP), f"config.model.{GROUP}")
    dtype = compute_dtype(m)
    backbone = backbone_from_config(m)
    if isinstance(backbone, VGG16):
        features = SSDVGGFeatures(
            vgg=backbone.clone(ceil_mode=True),
            extras=s.extras,
            fc_channels=s.fc_channels,
            l2norm=s.l2norm,
            l2norm_scale=s.l2norm_scale,
            dtype=dtype,
        )
        num_sources = 2 + len(s.extras)
    else:  # ResNet, MobileNetV2, EfficientNet-Lite0, Darknet: a dict of stage features
        features = SSDResNetFeatures(
            resnet=backbone,
            extras=s.extras,
            sources=s.resnet_sources,
            extras_norm=s.extras_norm,
            source_channels=s.resnet_source_channels,
            l2norm=s.l2norm,
            l2norm_scale=s.l2norm_scale,
            dtype=dtype,
            bn_axis_name=bn_axis_name(m),
        )
        num_sources = len(s.resnet_sources) + len(s.extras)
    if len(s.aspect_ratios) != num_sources:
        raise ValueError(
            f"config.model.ssd.aspect_ratios has {len(s.aspect_ratios)} levels but backbone {m.backbone!r} with "
            f"{len(s.extras)} extras gives {num_sources} sources"
        )
    return SSD(features=features, num_classes=num_classes, settings=s, dtype=dtype)

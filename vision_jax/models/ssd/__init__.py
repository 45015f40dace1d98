"""The SSD family (Liu et al. 2016): SSD300 / SSD512 on VGG-16 and a ResNet variant.

    settings.py   SSDSettings: every hyper-parameter (config.model.ssd.*), SSD300 / SSD512 constants
    features.py   the source feature maps (VGG-16 with fc6/fc7 and L2Norm, or ResNet stages) + extras
    head.py       the per-source 3x3 class and box convolutions
    model.py      the detector on the detector contract (default boxes, MultiBox loss, decoding)
    build.py      build_ssd(config, num_classes)

Matching, hard negative mining, the MultiBox loss and decoding are ops researchers import too:
vision_jax.ops.ssd_targets.
"""

from vision_jax.models.ssd.build import GROUP, build_ssd
from vision_jax.models.ssd.settings import (
    SSD300_ASPECT_RATIOS,
    SSD300_EXTRAS,
    SSD300_SCALES,
    SSD300_STEPS,
    SSD512_ASPECT_RATIOS,
    SSD512_EXTRAS,
    SSD512_SCALES,
    SSD512_STEPS,
    SSDSettings,
)

__all__ = [
    "GROUP",
    "SSD300_ASPECT_RATIOS",
    "SSD300_EXTRAS",
    "SSD300_SCALES",
    "SSD300_STEPS",
    "SSD512_ASPECT_RATIOS",
    "SSD512_EXTRAS",
    "SSD512_SCALES",
    "SSD512_STEPS",
    "SSDSettings",
    "build_ssd",
]

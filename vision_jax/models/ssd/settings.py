"""The SSD family's hyper-parameters: `config.model.ssd.*` is generated from `SSDSettings`.

Defaults are SSD300 on VGG-16 (Liu et al. 2016; torchvision's ssd300_vgg16 scales); SSD512's
values are the constants below, for configs to use.
"""

from __future__ import annotations

import dataclasses

from vision_jax.models.settings import require

SSD300_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
SSD300_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)  # torchvision's ssd300_vgg16 (Caffe SSD)
SSD300_STEPS = (8.0, 16.0, 32.0, 64.0, 100.0, 300.0)
SSD300_EXTRAS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0))
SSD512_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
SSD512_SCALES = (0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05)
SSD512_STEPS = (8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
SSD512_EXTRAS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1))


@dataclasses.dataclass(frozen=True)
class SSDSettings:
    """SSD settings; each field is a key of `config.model.ssd`."""

    # Default boxes: per source the extra aspect ratios r (boxes r:1 and 1:r beside two squares);
    # L + 1 scales as fractions of the input (() = linear from min_scale to max_scale); per source
    # the input pixels per cell for the box centres (() = the feature grid).
    aspect_ratios: tuple[tuple[float, ...], ...] = SSD300_ASPECT_RATIOS
    scales: tuple[float, ...] = SSD300_SCALES
    min_scale: float = 0.2
    max_scale: float = 0.9
    steps: tuple[float, ...] = SSD300_STEPS
    # Sources: extra layers (mid_channels, out_channels, kernel, stride, padding) after the trunk;
    # VGG's fc6/fc7 width; the ResNet stages used as the first sources, an optional 3x3 conv + BN +
    # ReLU of that many channels on each (0 = none) and BatchNorm in the extras (ResNet only).
    extras: tuple[tuple[int, int, int, int, int], ...] = SSD300_EXTRAS
    fc_channels: int = 1024
    resnet_sources: tuple[str, ...] = ("C4", "C5")
    resnet_source_channels: int = 0
    extras_norm: bool = True
    # L2Norm with a learned scale (init l2norm_scale) on the first source (VGG's conv4_3).
    l2norm: bool = True
    l2norm_scale: float = 20.0
    # Matching (IoU >= iou_threshold, plus each object's best box) and hard negative mining.
    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    min_negatives: int = 0
    # Decoding: per class the topk_candidates boxes above score_threshold, class-aware NMS.
    score_threshold: float = 0.01
    nms_threshold: float = 0.45
    topk_candidates: int = 400
    max_detections: int = 200

    def check(self) -> None:
        for name in ("iou_threshold", "nms_threshold", "score_threshold"):
            require(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name), "must be in [0, 1]")
        require(self.neg_pos_ratio >= 0, "neg_pos_ratio", self.neg_pos_ratio, "must be >= 0")
        require(self.min_negatives >= 0, "min_negatives", self.min_negatives, "must be >= 0")
        require(self.topk_candidates >= 1, "topk_candidates", self.topk_candidates, "must be >= 1")
        require(self.max_detections >= 1, "max_detections", self.max_detections, "must be >= 1")
        for spec in self.extras:
            require(min(spec[:4]) >= 1 and spec[4] >= 0, "extras", self.extras,
                    "must be (mid_channels, out_channels, kernel, stride, padding) with positive "
                    "channels / kernel / stride")  # fmt: skip

    def boxes_per_location(self) -> tuple[int, ...]:
        return tuple(2 + 2 * len(ratios) for ratios in self.aspect_ratios)

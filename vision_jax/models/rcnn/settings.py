"""The R-CNN family's hyper-parameters: `config.model.rcnn.*` is generated from `RCNNSettings`,
`config.model.fast_rcnn.*` from `FastRCNNSettings`.

The RoI head's fields (`roi_*`, `box_head_*`, `test_*`: pooling, RoI sampling, the FC box head,
inference) are declared once, on `RoIHeadSettings`, which both inherit. Defaults are detectron2's
R50-FPN (COCO) values; the names follow its config keys (MODEL.ANCHOR_GENERATOR, MODEL.RPN,
MODEL.ROI_HEADS, MODEL.ROI_BOX_HEAD, MODEL.FPN, TEST). FastRCNNSettings changes the defaults that
Girshick (2015) sets differently.
"""

from __future__ import annotations

import dataclasses

from vision_jax.models.settings import require

POOLER_TYPES = ("align", "pool")


@dataclasses.dataclass(frozen=True)
class RoIHeadSettings:
    """The RoI box head's settings, shared by Faster R-CNN and Fast R-CNN."""

    # RoI pooling: output side, samples per bin, 'align' (RoIAlign) or 'pool' (RoIPool, C4 only);
    # FPN level assignment puts a canonical_size box on level 4.
    roi_pooler_resolution: int = 7
    roi_sampling_ratio: int = 2
    roi_pooler_type: str = "align"
    roi_canonical_size: float = 224.0
    # RoI sampling: num_samples RoIs per image, at most positive_fraction foreground (IoU >=
    # iou_threshold), background IoU in [bg_iou_low, iou_threshold) (RoIs below bg_iou_low are never
    # sampled; 0 = every other RoI is background); the ground-truth boxes join the proposals when
    # append_gt.
    roi_num_samples: int = 512
    roi_positive_fraction: float = 0.25
    roi_iou_threshold: float = 0.5
    roi_bg_iou_low: float = 0.0
    roi_append_gt: bool = True
    roi_smooth_l1_beta: float = 0.0
    # FPN box head: num_fc fully connected layers of fc_dim.
    box_head_fc_dim: int = 1024
    box_head_num_fc: int = 2
    # Inference: score threshold, class-aware NMS, detections per image.
    test_score_threshold: float = 0.05
    test_nms_threshold: float = 0.5
    test_max_detections: int = 100

    def check(self) -> None:
        for name in ("roi_iou_threshold", "roi_bg_iou_low", "test_nms_threshold", "test_score_threshold",
                     "roi_positive_fraction"):  # fmt: skip
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        require(self.roi_bg_iou_low <= self.roi_iou_threshold, "roi_bg_iou_low", self.roi_bg_iou_low,
                f"must be <= roi_iou_threshold={self.roi_iou_threshold}")  # fmt: skip
        for name in ("roi_pooler_resolution", "roi_num_samples", "box_head_fc_dim", "test_max_detections"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        for name in ("box_head_num_fc", "roi_sampling_ratio", "roi_smooth_l1_beta"):
            value = getattr(self, name)
            require(value >= 0, name, value, "must be >= 0")
        require(self.roi_canonical_size > 0, "roi_canonical_size", self.roi_canonical_size, "must be > 0")
        require(self.roi_pooler_type in POOLER_TYPES, "roi_pooler_type", self.roi_pooler_type,
                f"is not one of {POOLER_TYPES}")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RCNNSettings(RoIHeadSettings):
    """Faster R-CNN (FPN and C4) settings; each field is a key of `config.model.rcnn` (the RoI head's
    are RoIHeadSettings')."""

    # FPN (model 'faster_rcnn' only): channels of every pyramid level.
    fpn_channels: int = 256
    # Anchors: one tuple of sizes (input pixels) per RPN level (5 for FPN's P2..P6, 1 for C4).
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # RPN targets: IoU >= fg foreground, < bg background; num_samples anchors per image.
    rpn_fg_iou_threshold: float = 0.7
    rpn_bg_iou_threshold: float = 0.3
    rpn_num_samples: int = 256
    rpn_positive_fraction: float = 0.5
    # Proposals: top-k per level before NMS, top-k per image after it.
    rpn_pre_nms_topk_train: int = 2000
    rpn_pre_nms_topk_test: int = 1000
    rpn_post_nms_topk_train: int = 1000
    rpn_post_nms_topk_test: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 0.0  # proposals with a side <= this many pixels are dropped
    rpn_smooth_l1_beta: float = 0.0  # 0 = L1 (detectron2's default)
    rpn_conv_channels: int | None = None  # the RPN's shared 3x3 conv (MODEL.RPN.CONV_DIMS); None = its input's
    # Mask head (models 'mask_rcnn', 'mask_rcnn_c4'; detectron2's ROI_MASK_HEAD): mask_head_num_conv 3x3
    # convs of mask_head_conv_dim + ReLU (None: the variant's, 4 for FPN, 0 for C4), a 2x2 stride-2
    # deconv of mask_head_conv_dim + ReLU, a 1x1 conv per class; the mask loss is multiplied by
    # mask_loss_weight. FPN pools RoIAlign mask_pooler_resolution squares (sampling roi_sampling_ratio)
    # -> mask_resolution = 2 x mask_pooler_resolution; C4 reads res5's output of the box head's RoIs
    # (roi_pooler_resolution / 2) -> 2 x ceil(roi_pooler_resolution / 2) and ignores mask_pooler_resolution.
    mask_pooler_resolution: int = 14
    mask_head_conv_dim: int = 256
    mask_head_num_conv: int | None = None
    mask_loss_weight: float = 1.0

    def check(self) -> None:
        super().check()
        for name in ("rpn_fg_iou_threshold", "rpn_bg_iou_threshold", "rpn_nms_threshold", "rpn_positive_fraction"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        require(self.rpn_bg_iou_threshold <= self.rpn_fg_iou_threshold, "rpn_bg_iou_threshold",
                self.rpn_bg_iou_threshold, f"must be <= rpn_fg_iou_threshold={self.rpn_fg_iou_threshold}")  # fmt: skip
        for name in ("rpn_num_samples", "rpn_pre_nms_topk_train", "rpn_pre_nms_topk_test", "rpn_post_nms_topk_train",
                     "rpn_post_nms_topk_test", "fpn_channels", "mask_pooler_resolution",
                     "mask_head_conv_dim"):  # fmt: skip
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        for name in ("rpn_min_size", "rpn_smooth_l1_beta", "mask_loss_weight"):
            value = getattr(self, name)
            require(value >= 0, name, value, "must be >= 0")
        if self.mask_head_num_conv is not None:
            require(self.mask_head_num_conv >= 0, "mask_head_num_conv", self.mask_head_num_conv, "must be >= 0 or None")
        if self.rpn_conv_channels is not None:
            require(self.rpn_conv_channels >= 1, "rpn_conv_channels", self.rpn_conv_channels, "must be >= 1 or None")
        require(len(self.anchor_sizes) >= 1 and all(len(level) >= 1 and min(level) > 0 for level in self.anchor_sizes),
                "anchor_sizes", self.anchor_sizes, "needs one tuple of positive sizes per RPN level")  # fmt: skip
        require(len({len(level) for level in self.anchor_sizes}) == 1, "anchor_sizes", self.anchor_sizes,
                "needs the same number of sizes on every level (the RPN head is shared)")  # fmt: skip
        require(len(self.anchor_aspect_ratios) >= 1 and min(self.anchor_aspect_ratios) > 0, "anchor_aspect_ratios",
                self.anchor_aspect_ratios, "must be positive")  # fmt: skip

    @property
    def mask_resolution(self) -> int:
        """Side of the FPN mask head's output and of its mask targets (the deconv doubles the pooled side)."""
        return 2 * self.mask_pooler_resolution

    @property
    def anchors_per_location(self) -> int:
        return len(self.anchor_aspect_ratios) * len(self.anchor_sizes[0])


@dataclasses.dataclass(frozen=True)
class FastRCNNSettings(RoIHeadSettings):
    """Fast R-CNN (Girshick, 2015) settings, `config.model.fast_rcnn.*`: the RoI head's fields with the
    paper's defaults, plus the feature map and the test-time truncated SVD."""

    # The backbone output the RoIs are pooled from (one map; stride 16 in the paper: VGG-16's
    # 'conv5_3', a ResNet's 'C4', whose res5 stage is then not built).
    feature_map: str = "C4"
    # The paper's RoI head: 7x7 RoIPool (x quantised), 64 RoIs per image, 25% foreground at IoU >= 0.5,
    # background in [0.1, 0.5), two FC layers of 4096, smooth L1 with sigma 1 (beta 1).
    roi_pooler_type: str = "pool"
    roi_num_samples: int = 64
    roi_bg_iou_low: float = 0.1
    roi_smooth_l1_beta: float = 1.0
    box_head_fc_dim: int = 4096
    # Test-time truncated SVD of the FC layers (paper section 3.1): one rank per FC layer (0 = keep
    # that layer whole); () = no SVD. Parameters trained without it are factorised by
    # fast_rcnn.truncated_svd_variables; the paper keeps 1024 (fc6) and 256 (fc7) of VGG-16's 4096.
    svd_ranks: tuple[int, ...] = ()

    def check(self) -> None:
        super().check()
        require(bool(self.feature_map), "feature_map", self.feature_map, "must name a backbone output")
        require(all(rank >= 0 for rank in self.svd_ranks), "svd_ranks", self.svd_ranks, "must be >= 0")
        require(not self.svd_ranks or len(self.svd_ranks) == self.box_head_num_fc, "svd_ranks", self.svd_ranks,
                f"needs one rank per FC layer (box_head_num_fc={self.box_head_num_fc}) or none")  # fmt: skip

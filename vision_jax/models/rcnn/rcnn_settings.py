"""R-CNN's (Girshick et al. 2014) hyper-parameters: `config.model.rcnn.*` of model 'rcnn' is generated from
`RegionCNNSettings` (the group name 'rcnn' is the family's; Faster R-CNN's models fill it from
RCNNSettings). Defaults are the paper's and its MATLAB code's (rcnn_train.m, rcnn_im_crop.m,
rcnn_train_bbox_regressor.m), for VGG-16 at 227 px crops; configs for small data change a few.
"""

from __future__ import annotations

import dataclasses

from vision_jax.models.rcnn.region_warp import check_warp_settings, scaled_context_padding
from vision_jax.models.rcnn.rcnn_svm import SVMSettings
from vision_jax.models.settings import SettingsError, require

HEADS = ("vgg_fc", "gap")
SCORERS = ("svm", "softmax")


@dataclasses.dataclass(frozen=True)
class RegionCNNSettings:
    """Each field is a key of `config.model.rcnn` for model 'rcnn'."""

    # Warp (region_warp.py): crop side, and context in crop pixels (None: the paper's 16 px at 227, scaled
    # to crop_size); samples outside the image get the mean colour (0 after the pipeline's normalisation).
    crop_size: int = 227
    context_padding: float | None = None
    # The CNN on a warped region (region_cnn.py): the backbone output `feature`, pooled by `head` ('vgg_fc':
    # 7x7 average pool + flatten, VGG's pool5; 'gap': global average pool), then num_fc fully connected layers
    # of fc_dim with ReLU and dropout (fc6, fc7), then the classifier over C + 1 classes (background last).
    feature: str = "C5"
    head: str = "vgg_fc"
    fc_dim: int = 4096
    num_fc: int = 2
    dropout_rate: float = 0.5
    # Fine-tuning: regions with IoU >= fg_iou_threshold with a ground-truth box are that box's class, all
    # others background; each image of a batch gives regions_per_image regions, at most fg_fraction of
    # them foreground (the paper: 32 foreground + 96 background in a batch of 128), ground-truth boxes
    # among the candidates.
    fg_iou_threshold: float = 0.5
    regions_per_image: int = 32
    fg_fraction: float = 0.25
    # Feature extraction for the SVMs and the box regressors: the first feature_images training images
    # (0 = all), regions_per_call regions per CNN call (features stage and inference).
    feature_images: int = 0
    regions_per_call: int = 512
    # SVMs (rcnn_svm.py): liblinear -c svm_C -w1 svm_positive_weight -B svm_bias_multiplier; negatives have
    # IoU < svm_negative_iou with every ground-truth box of the class; hard negative mining thresholds,
    # retrain limit and passes as rcnn_train.m; the solver's tolerance.
    svm_C: float = 1e-3
    svm_positive_weight: float = 2.0
    svm_bias_multiplier: float = 10.0
    svm_negative_iou: float = 0.3
    svm_hard_threshold: float = -1.0001
    svm_evict_threshold: float = -1.2
    svm_retrain_limit: int = 2000
    svm_hard_epochs: int = 1
    svm_tolerance: float = 1e-4
    # Box regression (rcnn_box_regression.py): examples with IoU > box_reg_min_overlap, ridge lambda.
    box_reg_min_overlap: float = 0.6
    box_reg_lambda: float = 1000.0
    # Inference: 'svm' or 'softmax' (the fine-tuned classifier's foreground probabilities) scores, with or
    # without box regression; candidates scoring <= test_score_threshold are dropped (an SVM margin for
    # 'svm', a probability for 'softmax'), per-class NMS at test_nms_threshold, test_max_detections kept.
    test_scorer: str = "svm"
    test_box_regression: bool = True
    test_score_threshold: float = -1.5
    test_nms_threshold: float = 0.3
    test_max_detections: int = 100

    def check(self) -> None:
        require(self.crop_size >= 1, "crop_size", self.crop_size, "must be >= 1")
        try:
            check_warp_settings(self.crop_size, self.padding)
        except ValueError:
            raise SettingsError(f"context_padding={self.context_padding!r} must be in [0, crop_size / 2 = "
                                f"{self.crop_size / 2})") from None  # fmt: skip
        require(self.head in HEADS, "head", self.head, f"is not one of {HEADS}")
        require(self.test_scorer in SCORERS, "test_scorer", self.test_scorer, f"is not one of {SCORERS}")
        require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", self.dropout_rate, "must be in [0, 1)")
        for name in ("fg_iou_threshold", "fg_fraction", "svm_negative_iou", "box_reg_min_overlap", "test_nms_threshold"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        for name in ("fc_dim", "regions_per_image", "regions_per_call", "svm_hard_epochs", "test_max_detections"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        for name in ("num_fc", "feature_images", "svm_retrain_limit"):
            value = getattr(self, name)
            require(value >= 0, name, value, "must be >= 0")
        for name in ("svm_C", "svm_positive_weight", "svm_bias_multiplier", "svm_tolerance", "box_reg_lambda"):
            value = getattr(self, name)
            require(value > 0, name, value, "must be > 0")
        require(self.svm_evict_threshold <= self.svm_hard_threshold, "svm_evict_threshold", self.svm_evict_threshold,
                f"must be <= svm_hard_threshold={self.svm_hard_threshold} (a new hard negative would be evicted)")

    @property
    def padding(self) -> float:
        """The context in crop pixels (context_padding, or the paper's scaled to crop_size)."""
        return scaled_context_padding(self.crop_size) if self.context_padding is None else self.context_padding

    @property
    def svm(self) -> SVMSettings:
        return SVMSettings(C=self.svm_C, positive_weight=self.svm_positive_weight,
                           bias_multiplier=self.svm_bias_multiplier, hard_threshold=self.svm_hard_threshold,
                           evict_threshold=self.svm_evict_threshold, retrain_limit=self.svm_retrain_limit,
                           hard_epochs=self.svm_hard_epochs, tolerance=self.svm_tolerance)  # fmt: skip

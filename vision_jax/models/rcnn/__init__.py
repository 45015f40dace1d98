"""The R-CNN family: Faster R-CNN (FPN and C4) — the RPN, RoI box head, their targets, losses and
decoding, and the builders. Fast R-CNN, R-CNN and Mask R-CNN join this folder.

    settings.py     RoIHeadSettings (the RoI head's fields, declared once), RCNNSettings
                    (config.model.rcnn.*) and FastRCNNSettings (config.model.fast_rcnn.*);
                    the modules take it whole (`settings=`) and restate no default
    rpn.py          RPN head, anchor targets and losses, proposal selection
    box_head.py     RoI box heads (FC, res5), RoI targets (with each RoI's matched ground truth),
                    Fast R-CNN losses, inference through vision_jax.ops.multiclass_detections
    mask_head.py    Mask R-CNN's mask head, its targets and loss, its inference
    faster_rcnn.py  TwoStageDetector and the two detectors (FPN, C4) on the contract of
                    vision_jax/models/detector.py
    mask_rcnn.py    MaskRCNN / MaskRCNNC4: the FPN / C4 detectors plus the mask head
    fast_rcnn.py    FastRCNN (Girshick 2015): given proposals (targets['proposals']) pooled from one
                    shared feature map, two FC layers; test-time truncated SVD of the FC layers
    R-CNN (Girshick et al. 2014), model 'rcnn', trained by its stages rather than the one loop:
    rcnn_settings.py   RegionCNNSettings (config.model.rcnn.* of model 'rcnn')
    region_warp.py     each proposal warped to a square crop with context and the mean colour outside
    region_cnn.py      the CNN on warped regions (backbone, pool, fc, C + 1 classes) and its builder
    rcnn_finetune.py   region labels and 25%-foreground sampling, the fine-tuning loss
    rcnn_regions.py    every valid region of a batch through the CNN, in fixed-size calls
    rcnn_svm.py        per-class linear SVMs with hard negative mining (liblinear via scikit-learn)
    rcnn_box_regression.py  class-specific ridge box regression (targets of the paper's appendix C)
    rcnn_inference.py  SVM / softmax scores, box regression, per-class NMS
    rcnn_run.py        the state the stages share (RCNNRun), the record of finished stages
                       (W/rcnn/stages.json, StageLog), atomic writers of the run's files
    rcnn_stages.py     train_rcnn: proposals, finetune, features, svm, box_regression, evaluate,
                       each resumable (scripts/train.py runs it through ModelSpec.trainer)
    rcnn_evaluation.py the detector and its softmax / SVM ablations on the eval split (the evaluate stage);
                       evaluate_rcnn (scripts/evaluate.py, ModelSpec.evaluator)
    rcnn_detector.py   a finished run's whole detector as one batch function (scripts/predict.py --images,
                       ModelSpec.folder_inference)
    windows.py      sliding-window detection's window boxes (input pixels, exact) and labels
    sliding_window.py  SlidingWindowSettings (config.model.sliding_window.*) and the OverFeat-style
                    sliding-window detector: window classifiers run as convolutions over a pyramid
    build.py        build_faster_rcnn / build_faster_rcnn_c4 / build_mask_rcnn / build_mask_rcnn_c4 /
                    build_fast_rcnn / build_sliding_window (config, num_classes)
"""

from vision_jax.models.rcnn.build import (
    FAST_RCNN_GROUP,
    GROUP,
    build_fast_rcnn,
    build_faster_rcnn,
    build_faster_rcnn_c4,
    build_mask_rcnn,
    build_mask_rcnn_c4,
    build_sliding_window,
)
from vision_jax.models.rcnn.settings import FastRCNNSettings, RCNNSettings
from vision_jax.models.rcnn.sliding_window import GROUP as SLIDING_WINDOW_GROUP
from vision_jax.models.rcnn.sliding_window import SlidingWindowSettings

__all__ = [
    "FAST_RCNN_GROUP",
    "FastRCNNSettings",
    "GROUP",
    "RCNNSettings",
    "SLIDING_WINDOW_GROUP",
    "SlidingWindowSettings",
    "build_fast_rcnn",
    "build_faster_rcnn",
    "build_faster_rcnn_c4",
    "build_mask_rcnn",
    "build_mask_rcnn_c4",
    "build_sliding_window",
]

"""The R-CNN family: Faster R-CNN (FPN and C4) — the RPN, RoI box head, their targets, losses and
decoding, and the builders. Fast R-CNN, R-CNN and Mask R-CNN join this folder.

    settings.py     RCNNSettings: every hyper-parameter and its default (config.model.rcnn.*);
                    the modules take it whole (`settings=`) and restate no default
    rpn.py          RPN head, anchor targets and losses, proposal selection
    box_head.py     RoI box heads (FC, res5), RoI targets (with each RoI's matched ground truth),
                    Fast R-CNN losses, inference through vision_jax.ops.multiclass_detections
    mask_head.py    Mask R-CNN's mask head, its targets and loss, its inference
    faster_rcnn.py  TwoStageDetector and the two detectors (FPN, C4) on the contract of
                    vision_jax/models/detector.py
    mask_rcnn.py    MaskRCNN / MaskRCNNC4: the FPN / C4 detectors plus the mask head
    build.py        build_faster_rcnn / build_faster_rcnn_c4 / build_mask_rcnn / build_mask_rcnn_c4
                    (config, num_classes)
"""

from vision_jax.models.rcnn.build import (
    GROUP,
    build_faster_rcnn,
    build_faster_rcnn_c4,
    build_mask_rcnn,
    build_mask_rcnn_c4,
)
from vision_jax.models.rcnn.settings import RCNNSettings

__all__ = ["GROUP", "RCNNSettings", "build_faster_rcnn", "build_faster_rcnn_c4", "build_mask_rcnn", "build_mask_rcnn_c4"]

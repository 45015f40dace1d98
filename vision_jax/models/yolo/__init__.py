"""The YOLO family: YOLO v1 (Redmon et al. 2016) and v3 (Redmon & Farhadi 2018).

    settings.py   YOLOv1Settings / YOLOv3Settings: every hyper-parameter (config.model.yolo.*)
    heads.py      v1's conv + FC grid head, v3's neck with three output convs
    v1.py, v3.py  YOLOv1 / YOLOv3(backbone, num_classes, settings), `Detector`s: the contract is
                  vision_jax/models/detector.py
    build.py      build_yolo_v1 / build_yolo_v3 (config, num_classes)

Targets, losses and box decoding are ops researchers import too: vision_jax.ops.yolo_targets;
detections come from the one post-processor, vision_jax.ops.multiclass_detections (pre_nms_topk).
Darknet-53 is the backbone table's 'darknet53'.
"""

from vision_jax.models.yolo.build import GROUP, build_yolo_v1, build_yolo_v3
from vision_jax.models.yolo.settings import YOLOv1Settings, YOLOv3Settings

__all__ = ["GROUP", "YOLOv1Settings", "YOLOv3Settings", "build_yolo_v1", "build_yolo_v3"]

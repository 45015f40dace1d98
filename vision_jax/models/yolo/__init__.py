"""The YOLO family: YOLO v1 (Redmon et al. 2016) and v3 (Redmon & Farhadi 2018).

    settings.py   YOLOv1Settings / YOLOv3Settings: every hyper-parameter (config.model.yolo.*)
    heads.py      v1's conv + FC grid head, v3's neck with three output convs
    v1.py, v3.py  the detectors on the detector contract
    build.py      build_yolo_v1 / build_yolo_v3 (config, num_classes)

Targets, losses and box decoding are ops researchers import too: vision_jax.ops.yolo_targets.
Darknet-53 is the backbone table's 'darknet53'.
"""

from vision_jax.models.yolo.build import GROUP, build_yolo_v1, build_yolo_v3
from vision_jax.models.yolo.settings import YOLOv1Settings, YOLOv3Settings

__all__ = ["GROUP", "YOLOv1Settings", "YOLOv3Settings", "build_yolo_v1", "build_yolo_v3"]

"""The YOLO builders reject bad `config.model.yolo` values with errors that name the key."""

import pytest

from vision_jax.models.yolo.build import build_yolo_v1, build_yolo_v3
from vision_jax.train.config import base_config


def yolo_config(name: str):
    c = base_config("detection")
    c.model.name = name
    c.model.backbone = "resnet18"
    c.data.fixed_size = True
    return c


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("masks", ((0, 1, 2), (3, 4, 5)), r"masks=.* needs 3 levels"),
        ("masks", ((0, 1, 2), (3, 4, 5), (6, 7, 7)), r"masks=.* must use each of the 9 priors exactly once"),
        ("prior_iou_threshold", 1.5, r"prior_iou_threshold=1.5 must be in \[0, 1\) or None"),
        ("max_detections", 0, r"max_detections=0 and pre_nms_topk=1000 must be >= 1"),
    ],
)
def test_v3_names_the_bad_key(key, value, message):
    c = yolo_config("yolo_v3")
    setattr(c.model.yolo, key, value)
    with pytest.raises(ValueError, match=r"config\.model\.yolo\." + message):
        build_yolo_v3(c, num_classes=3)


def test_v3_priors_must_be_positive_pairs():
    c = yolo_config("yolo_v3")
    c.model.yolo.priors = ((10.0, 13.0),) * 8 + ((0.0, 5.0),)
    with pytest.raises(ValueError, match=r"config\.model\.yolo\.priors=.* must be positive \(width, height\) pairs"):
        build_yolo_v3(c, num_classes=3)


def test_v3_accepts_the_threshold_and_passes_it_to_the_model():
    c = yolo_config("yolo_v3")
    assert build_yolo_v3(c, num_classes=3).prior_iou_threshold is None  # the paper's single prior
    c.model.yolo.prior_iou_threshold = 0.5
    assert build_yolo_v3(c, num_classes=3).prior_iou_threshold == 0.5


@pytest.mark.parametrize("name", ["yolo_v1", "yolo_v3"])
def test_both_need_fixed_size_inputs(name):
    c = yolo_config(name)
    c.data.fixed_size = False
    with pytest.raises(ValueError, match=rf"config\.model\.name='{name}' needs config\.data\.fixed_size=True"):
        (build_yolo_v1 if name == "yolo_v1" else build_yolo_v3)(c, num_classes=3)


def test_v1_grid_must_be_positive():
    c = yolo_config("yolo_v1")
    c.model.yolo.grid_size = 0
    with pytest.raises(ValueError, match=r"config\.model\.yolo\.grid_size=0 and boxes_per_cell=2 must be >= 1"):
        build_yolo_v1(c, num_classes=3)

"""The YOLO builders read `config.model.yolo` (generated from YOLOv1Settings / YOLOv3Settings) and
refuse bad or unknown keys with errors that name the full key, before anything is built."""

import dataclasses

import pytest

from vision_jax.models.backbones.darknet import DARKNET53_STAGE_SIZES, Darknet
from vision_jax.models.yolo.build import build_yolo_v1, build_yolo_v3
from vision_jax.models.yolo.settings import YOLOv1Settings, YOLOv3Settings
from vision_jax.train.config import base_config

BUILD = {"yolo_v1": build_yolo_v1, "yolo_v3": build_yolo_v3}


def yolo_config(name: str):
    c = base_config("detection", model=name)
    c.data.fixed_size = True
    return c


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("masks", ((0, 1, 2), (3, 4, 5)), r"masks=.* needs 3 levels"),
        ("masks", ((0, 1, 2), (3, 4, 5), (6, 7, 7)), r"masks=.* must use each of the 9 priors exactly once"),
        ("prior_iou_threshold", 1.5, r"prior_iou_threshold=1.5 must be in \[0, 1\) or None"),
        ("max_detections", 0, r"max_detections=0 must be >= 1"),
        ("pre_nms_topk", 0, r"pre_nms_topk=0 must be >= 1"),
        ("nms_threshold", 1.5, r"nms_threshold=1.5 must be in \[0, 1\]"),
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


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("grid_size", 0, r"grid_size=0 must be >= 1"),
        ("boxes_per_cell", 0, r"boxes_per_cell=0 must be >= 1"),
        ("dropout", 1.0, r"dropout=1.0 must be in \[0, 1\)"),
        ("output_layer", "dense", r"output_layer='dense' must be one of \('fully_connected', 'convolutional'\)"),
        ("max_detections", 0, r"max_detections=0 must be >= 1"),
    ],
)
def test_v1_names_the_bad_key(key, value, message):
    c = yolo_config("yolo_v1")
    setattr(c.model.yolo, key, value)
    with pytest.raises(ValueError, match=r"config\.model\.yolo\." + message):
        build_yolo_v1(c, num_classes=3)


@pytest.mark.parametrize(
    "name,key",
    [("yolo_v1", "neck_channels"), ("yolo_v3", "grid_size"), ("yolo_v3", "darknet_stage_sizes")],
)
def test_a_key_of_the_other_version_or_a_removed_one_is_refused_by_name(name, key):
    """Each version's group holds its own keys only; Darknet-53's stage sizes are its own."""
    c = yolo_config(name)
    assert key not in c.model.yolo
    c.model.yolo[key] = 1
    with pytest.raises(ValueError, match=rf"config\.model\.yolo has unknown key\(s\) \['{key}'\]"):
        BUILD[name](c, num_classes=3)


@pytest.mark.parametrize("name,settings", [("yolo_v1", YOLOv1Settings), ("yolo_v3", YOLOv3Settings)])
def test_the_group_is_the_settings_fields_with_their_defaults(name, settings):
    c = yolo_config(name)
    assert c.model.yolo.to_dict() == {f.name: f.default for f in dataclasses.fields(settings)}
    assert BUILD[name](c, num_classes=3).settings == settings()


def test_v3_config_values_reach_the_model_settings():
    c = yolo_config("yolo_v3")
    c.model.yolo.prior_iou_threshold = 0.5  # None by default: the paper's single prior
    c.model.yolo.neck_channels = 64
    c.model.yolo.priors = [[float(i + 1), float(i + 2)] for i in range(9)]  # lists from a command line
    settings = build_yolo_v3(c, num_classes=3).settings
    assert settings.prior_iou_threshold == 0.5 and settings.neck_channels == 64
    assert settings.priors == tuple((float(i + 1), float(i + 2)) for i in range(9))


def test_darknet53_is_the_backbone_tables_with_the_shared_width_and_cross_replica_switch():
    c = yolo_config("yolo_v3")
    c.model.backbone, c.model.width, c.model.cross_replica_bn = "darknet53", 32, True
    backbone = build_yolo_v3(c, num_classes=3).backbone
    assert isinstance(backbone, Darknet)
    assert (tuple(backbone.stage_sizes), backbone.width, backbone.bn_axis_name) == (DARKNET53_STAGE_SIZES, 32, "data")


@pytest.mark.parametrize("name", ["yolo_v1", "yolo_v3"])
def test_both_need_fixed_size_inputs(name):
    c = yolo_config(name)
    c.data.fixed_size = False
    with pytest.raises(ValueError, match=rf"config\.model\.name='{name}' needs config\.data\.fixed_size=True"):
        BUILD[name](c, num_classes=3)

"""A family's hyper-parameters are one dataclass; its config group is generated and read back.

Specification: every field default becomes a config key (None as a typed placeholder); reading
the group back gives the dataclass with the annotated types (lists -> tuples, ints -> floats),
refuses unknown keys and bad values with the full key in the message, and keeps defaults for
keys a config does not set. Checked on every Settings class of the model table.
"""

import dataclasses
import random

import ml_collections
import pytest

from vision_jax.models.settings import config_group, settings_from_config
from vision_jax.models.table import MODELS
from vision_jax.train.config import base_config, validate

SETTINGS = sorted({spec.settings for spec in MODELS.values()}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda cls: cls.__name__)
def test_group_round_trips_to_the_dataclass_defaults(cls):
    group = config_group(cls)
    assert sorted(group.keys()) == sorted(f.name for f in dataclasses.fields(cls))
    assert settings_from_config(cls, group, "config.model.x") == cls()


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda cls: cls.__name__)
def test_unknown_key_is_refused_by_name(cls):
    group = config_group(cls)
    group.not_a_setting = 1
    with pytest.raises(ValueError, match=r"config\.model\.x has unknown key\(s\) \['not_a_setting'\]"):
        settings_from_config(cls, group, "config.model.x")


def test_lists_become_tuples_and_ints_floats_as_annotated():
    from vision_jax.models.rcnn import RCNNSettings

    group = config_group(RCNNSettings)
    group.anchor_sizes = [[16], [32], [64], [128], [256]]
    group.rpn_nms_threshold = 1
    settings = settings_from_config(RCNNSettings, group, "config.model.rcnn")
    assert settings.anchor_sizes == ((16.0,), (32.0,), (64.0,), (128.0,), (256.0,))
    assert all(type(v) is float for level in settings.anchor_sizes for v in level)
    assert type(settings.rpn_nms_threshold) is float and settings.rpn_nms_threshold == 1.0
    hash(settings)  # frozen and hashable: a static module field


def test_none_default_is_a_typed_placeholder():
    from vision_jax.models.yolo import YOLOv3Settings

    group = config_group(YOLOv3Settings)
    assert group.prior_iou_threshold is None
    group.prior_iou_threshold = 0.25  # a float is accepted by the placeholder's type
    with pytest.raises(TypeError):
        group.prior_iou_threshold = "high"
    assert settings_from_config(YOLOv3Settings, group, "config.model.yolo").prior_iou_threshold == 0.25


@pytest.mark.parametrize(
    "model, key, value, message",
    [
        ("ssd", "nms_threshold", 1.5, r"config\.model\.ssd\.nms_threshold=1\.5 must be in \[0, 1\]"),
        ("faster_rcnn", "roi_pooler_type", "mean", r"config\.model\.rcnn\.roi_pooler_type='mean' is not one of"),
        ("faster_rcnn", "rpn_bg_iou_threshold", 0.8, r"config\.model\.rcnn\.rpn_bg_iou_threshold=0\.8 must be <="),
        ("yolo_v3", "masks", ((0, 1), (2, 3), (4, 5)), r"config\.model\.yolo\.masks=.* exactly once"),
        ("yolo_v1", "grid_size", 0, r"config\.model\.yolo\.grid_size=0 must be >= 1"),
        ("fcn8s", "dropout_rate", 1.0, r"config\.model\.segmentation\.dropout_rate=1\.0 must be in \[0, 1\)"),
        ("classifier", "head", "mlp", r"config\.model\.classifier\.head='mlp' is not one of"),
    ],
)
def test_bad_value_is_refused_before_anything_is_built(model, key, value, message):
    config = base_config(MODELS[model].task, model=model)
    config.model[MODELS[model].group][key] = value
    with pytest.raises(ValueError, match=message):
        validate(config)


def test_config_holds_only_the_chosen_models_group():
    for name, spec in MODELS.items():
        model = base_config(spec.task, model=name).model
        groups = [k for k, v in model.items() if isinstance(v, ml_collections.ConfigDict)]
        assert groups == [spec.group], (name, groups)


def test_a_model_of_another_task_or_family_is_refused_by_name():
    with pytest.raises(ValueError, match=r"model='fcn8s' is not a detection model; known: \['faster_rcnn'"):
        base_config("detection", model="fcn8s")
    config = base_config("detection", model="ssd")
    config.model.name = "yolo_v3"  # the ssd group stays: the yolo group is missing
    with pytest.raises(ValueError, match=r"config\.model\.yolo is missing"):
        validate(config)


def test_a_setting_overridden_in_a_config_reaches_the_built_module():
    seed = random.randrange(2**31)
    value = random.Random(seed).choice([0.3, 0.35, 0.4])
    config = base_config("detection", model="ssd")
    config.model.ssd.nms_threshold = value
    module = MODELS["ssd"].build(config, 3)
    assert module.settings.nms_threshold == value, f"seed {seed}"

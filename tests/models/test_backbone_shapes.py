"""Full-size backbones traced with jax.eval_shape (no FLOPs): parameter counts equal
torchvision's published numbers, feature strides and channels equal the papers'."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones import BACKBONES, build_backbone, feature_channels, feature_strides
from vision_jax.models.classifier import Classifier, ClassifierSettings

# torchvision model docs ("num_params" of the IMAGENET1K_V1 weights), 1000 classes.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
}

# He et al. 2016 table 1 (conv2_x..conv5_x outputs at 224²: 56, 28, 14, 7) and
# Simonyan & Zisserman 2015 table 1 (64, 128, 256, 512, 512 channels).
PAPER_FEATURES = {
    "resnet18": {"C2": (56, 64), "C3": (28, 128), "C4": (14, 256), "C5": (7, 512)},
    "resnet34": {"C2": (56, 64), "C3": (28, 128), "C4": (14, 256), "C5": (7, 512)},
    "resnet50": {"C2": (56, 256), "C3": (28, 512), "C4": (14, 1024), "C5": (7, 2048)},
    "resnet101": {"C2": (56, 256), "C3": (28, 512), "C4": (14, 1024), "C5": (7, 2048)},
    "vgg16": {
        "C1": (112, 64),
        "C2": (56, 128),
        "C3": (28, 256),
        "C4": (14, 512),
        "C5": (7, 512),
        "conv4_3": (28, 512),
        "conv5_3": (14, 512),
    },
}
PAPER_FEATURES["vgg16_bn"] = PAPER_FEATURES["vgg16"]
# Redmon & Farhadi 2018 table 1 (Darknet-53: 64, 128, 256, 512, 1024 channels at strides 2..32),
# at 224² instead of the table's 256².
PAPER_FEATURES["darknet53"] = {"C1": (112, 64), "C2": (56, 128), "C3": (28, 256), "C4": (14, 512), "C5": (7, 1024)}
# Sandler et al. 2018 table 2 (MobileNetV2: 24, 32, 96 channels at strides 4, 8, 16; the last 1x1 conv's
# 1280 at 32) and Tan & Le 2019 table 1 (EfficientNet-B0 stages, which Lite0 keeps: 24, 40, 112; 1280).
PAPER_FEATURES["mobilenet_v2"] = {"C2": (56, 24), "C3": (28, 32), "C4": (14, 96), "C5": (7, 1280)}
PAPER_FEATURES["efficientnet_lite0"] = {"C2": (56, 24), "C3": (28, 40), "C4": (14, 112), "C5": (7, 1280)}

IMAGES_224 = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_classifier_parameter_count_equals_torchvision(name):
    head = "vgg_fc" if name.startswith("vgg") else "gap"
    model = Classifier(backbone=build_backbone(name), num_classes=1000, settings=ClassifierSettings(head=head))
    logits, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), IMAGES_224)
    assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
    assert _count(variables["params"]) == TORCHVISION_PARAMS[name]
    # Only BatchNorm models carry running statistics: a mean and a var per scale.
    scales = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]) if path[-1].key == "scale"
    ]
    if name == "vgg16":
        assert "batch_stats" not in variables and not scales
    else:
        assert _count(variables["batch_stats"]) == 2 * _count(scales) > 0


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_feature_sizes_and_channels_at_224_equal_the_papers(name):
    backbone = build_backbone(name)
    features, _ = jax.eval_shape(lambda x: backbone.init_with_output(jax.random.key(0), x, train=False), IMAGES_224)
    got = {key: (value.shape[1], value.shape[3]) for key, value in features.items()}
    assert got == PAPER_FEATURES[name]
    # The helpers that heads use to size themselves agree with the traced model (of its own default
    # width: 64, or 32 for Darknet, MobileNetV2 and EfficientNet-Lite).
    assert feature_channels(name, width=backbone.width) == {key: c for key, (_, c) in got.items()}
    assert feature_strides(name) == {key: 224 // size for key, (size, _) in got.items()}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_cifar_stem_strides_and_tiny_width_channels(name):
    """cifar stem: C2..C5 at strides 1, 2, 4, 8; width scales every channel count."""
    backbone = build_backbone(name, stem="cifar", width=8)
    features, _ = jax.eval_shape(
        lambda x: backbone.init_with_output(jax.random.key(0), x, train=False),
        jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
    )
    expansion = 4 if name == "resnet50" else 1
    assert {k: v.shape for k, v in features.items()} == {
        f"C{level}": (2, 32 // 2 ** (level - 2), 32 // 2 ** (level - 2), 8 * 2 ** (level - 2) * expansion)
        for level in range(2, 6)
    }
    assert feature_strides(name, stem="cifar") == {"C2": 1, "C3": 2, "C4": 4, "C5": 8}
    assert feature_channels(name, width=8) == {k: v.shape[3] for k, v in features.items()}


def test_three_stage_resnet_stops_at_c4():
    """The trunk of a C4 detector: stage_sizes of length 3 gives C2..C4 only."""
    backbone = build_backbone("resnet50").clone(stage_sizes=(3, 4, 6))
    features, _ = jax.eval_shape(lambda x: backbone.init_with_output(jax.random.key(0), x, train=False), IMAGES_224)
    assert {k: v.shape for k, v in features.items()} == {
        "C2": (1, 56, 56, 256),
        "C3": (1, 28, 28, 512),
        "C4": (1, 14, 14, 1024),
    }


def test_unknown_backbone_name_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5'.*'resnet50'.*'vgg16_bn'"):
        build_backbone("resnet5")
    with pytest.raises(ValueError, match="unknown backbone"):
        feature_channels("vgg19")
    with pytest.raises(ValueError, match="unknown stem 'tiny'"):
        feature_strides("resnet18", stem="tiny")

"""torchvision ResNet / VGG state dicts -> Flax Classifier variables, checked end to end: the Flax
logits on real photos equal a float64 NumPy forward pass of the same state dict read in torch's
layout (torch_numpy_reference.py). No torchvision checkpoint ships offline, so the state dicts
are random, in torchvision's exact key layout (torchvision_state_dicts.py), at small widths."""

import jax
import numpy as np
import pytest

import torch_numpy_reference as ref
from torchvision_state_dicts import resnet_state_dict, vgg16_state_dict
from weights_test_inputs import max_relative_error, photos
from vision_jax.models.backbones import build_backbone
from vision_jax.models.classifier import Classifier, ClassifierSettings
from vision_jax.weights import WeightsMismatchError, convert_state_dict, layout_for

TOLERANCE = 1e-4  # max |flax - numpy| / max |numpy| over the logits


def _template(model, images):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


def _logits(model, variables, images):
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))


@pytest.mark.parametrize("name, width", [("resnet18", 16), ("resnet34", 8), ("resnet50", 8), ("resnet101", 4)])
def test_resnet_logits_equal_numpy_forward_of_the_torchvision_state_dict(name, width, seed):
    state_dict = resnet_state_dict(name, np.random.default_rng(seed), width=width)
    images = photos(224)
    model = Classifier(backbone=build_backbone(name, width=width), num_classes=1000)
    variables, report = convert_state_dict(state_dict, layout_for(name), _template(model, images))
    assert report.ok
    expected = ref.resnet_logits(state_dict, images.transpose(0, 3, 1, 2).astype(np.float64))
    error = max_relative_error(_logits(model, variables, images), expected)
    print(f"{name} width {width}: max relative error {error:.2e}")
    assert error <= TOLERANCE, f"seed={seed}: {name} logits differ by {error:.2e}"


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_vgg16_logits_equal_numpy_forward_of_the_torchvision_state_dict(name, seed):
    """Includes fc6, whose rows torch orders (c, h, w) and Flax (h, w, c)."""
    state_dict = vgg16_state_dict(np.random.default_rng(seed), batch_norm=name == "vgg16_bn", width=8, fc_features=64)
    images = photos(224)
    model = Classifier(
        backbone=build_backbone(name, width=8),
        num_classes=1000,
        settings=ClassifierSettings(head="vgg_fc", fc_features=64),
    )
    variables, report = convert_state_dict(state_dict, layout_for(name), _template(model, images))
    assert report.ok
    expected = ref.vgg16_logits(state_dict, images.transpose(0, 3, 1, 2).astype(np.float64))
    error = max_relative_error(_logits(model, variables, images), expected)
    print(f"{name} width 8: max relative error {error:.2e}")
    assert error <= TOLERANCE, f"seed={seed}: {name} logits differ by {error:.2e}"


def test_vgg_fc6_rows_are_permuted_from_chw_to_hwc_order(seed):
    state_dict = vgg16_state_dict(np.random.default_rng(seed), batch_norm=False, width=2, fc_features=5)
    variables, _ = convert_state_dict(state_dict, layout_for("vgg16"))
    kernel, weight = variables["params"]["fc6"]["kernel"], state_dict["classifier.0.weight"]
    channels = weight.shape[1] // 49
    for h, w, c in [(0, 0, 0), (0, 1, 0), (6, 2, channels - 1), (3, 6, 7)]:
        np.testing.assert_array_equal(kernel[(h * 7 + w) * channels + c], weight[:, c * 49 + h * 7 + w])


def test_backbone_only_conversion_ignores_the_classifier_and_matches_the_backbone(seed):
    state_dict = resnet_state_dict("resnet50", np.random.default_rng(seed), width=8, num_classes=10)
    backbone = build_backbone("resnet50", width=8)
    template = jax.eval_shape(
        lambda: backbone.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), train=False)
    )
    variables, report = convert_state_dict(state_dict, layout_for("resnet50", classifier=False), template)
    assert report.ok and set(variables) == {"params", "batch_stats"} and "fc" not in variables["params"]
    np.testing.assert_array_equal(
        variables["params"]["layer2"]["block0"]["downsample_conv"]["kernel"],
        state_dict["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"], state_dict["bn1.running_var"])


def test_missing_unexpected_and_mis_shaped_keys_are_reported_by_name(seed):
    state_dict = resnet_state_dict("resnet18", np.random.default_rng(seed), width=8, num_classes=10)
    del state_dict["layer1.0.bn1.running_var"]
    state_dict["layer9.0.conv1.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    state_dict["fc.weight"] = np.zeros((10, 7), np.float32)
    model = Classifier(backbone=build_backbone("resnet18", width=8), num_classes=10)
    template = _template(model, np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(WeightsMismatchError) as caught:
        convert_state_dict(state_dict, layout_for("resnet18"), template)
    report = caught.value.report
    message = str(caught.value)
    assert "layer1.0.bn1.running_var (for backbone/layer1/block0/bn1) is not in the file" in message
    assert "layer9.0.conv1.weight (8, 8, 3, 3) in the file is used by no layer" in message
    assert "fc.weight -> params/head/kernel: file gives (7, 10), the model has (64, 10)" in message
    assert len(report.missing) == 1 and len(report.unexpected) == 1 and len(report.mis_shaped) == 1

    variables, report = convert_state_dict(state_dict, layout_for("resnet18"), template, strict=False)
    assert not report.ok and "kernel" not in variables["params"]["head"]
    assert variables["params"]["backbone"]["conv1"]["kernel"].shape == (7, 7, 3, 8)


def test_a_state_dict_of_another_width_is_refused_with_every_shape_named(seed):
    state_dict = resnet_state_dict("resnet18", np.random.default_rng(seed), width=16, num_classes=10)
    model = Classifier(backbone=build_backbone("resnet18", width=8), num_classes=10)
    template = _template(model, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(WeightsMismatchError) as caught:
        convert_state_dict(state_dict, layout_for("resnet18"), template)
    assert "conv1.weight -> params/backbone/conv1/kernel: file gives (7, 7, 3, 16), the model has (7, 7, 3, 8)" in str(
        caught.value
    )
    # Every variable but the head's bias (10 classes in both) disagrees: one line each.
    report = caught.value.report
    assert not report.missing and not report.unexpected
    assert len(report.mis_shaped) == len(jax.tree_util.tree_leaves(template)) - 1

"""Classifier heads against NumPy, on tiny backbones with random weights."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backbone_numpy_reference as ref
from random_weights import max_relative_error, random_variables
from vision_jax.models.backbones import VGG16, ResNet
from vision_jax.models.classifier import Classifier, ClassifierSettings, adaptive_avg_pool


def _apply(model, variables, images, **kwargs):
    return jax.jit(lambda v, x: model.apply(v, x, **kwargs))(variables, images)


def test_gap_head_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
    model = Classifier(backbone=ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=4), num_classes=7)
    variables = random_variables(model, images, rng)
    logits = _apply(model, variables, images, train=False)

    params, stats = variables["params"], variables["batch_stats"]
    c5 = ref.resnet_v15(
        images, ref.ReferenceNet(params["backbone"], stats["backbone"], False), (1, 1, 1, 1), "basic", 4
    )["C5"]
    expected = c5.mean(axis=(1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
    error = max_relative_error(logits, expected)
    assert error < 1e-4, f"seed={seed}: rel error {error:.2e}"


@pytest.mark.parametrize("image_size", [96, 224])  # pool5 3x3 (bins overlap) and 7x7 (identity)
def test_vgg_fc_head_matches_numpy(image_size, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, image_size, image_size, 3)).astype(np.float32)
    settings = ClassifierSettings(head="vgg_fc", fc_features=16, dropout_rate=0.5)
    model = Classifier(backbone=VGG16(width=2), num_classes=5, settings=settings)
    variables = random_variables(model, images, rng)
    logits = _apply(model, variables, images, train=False)  # eval: dropout is the identity

    params = variables["params"]
    pool5 = ref.vgg16(images, ref.ReferenceNet(params["backbone"], None, False), False)["C5"]
    x = ref.adaptive_avg_pool(pool5, 7).reshape(2, -1)  # (h, w, c) flatten order
    for name in ("fc6", "fc7"):
        x = ref.relu(x @ params[name]["kernel"] + params[name]["bias"])
    expected = x @ params["head"]["kernel"] + params["head"]["bias"]
    error = max_relative_error(logits, expected)
    assert error < 1e-4, f"seed={seed} size={image_size}: rel error {error:.2e}"


def test_adaptive_avg_pool_matches_torch_bins(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 20, size=2)
    x = rng.normal(size=(2, height, width, 3)).astype(np.float32)
    error = max_relative_error(adaptive_avg_pool(jnp.asarray(x), 7), ref.adaptive_avg_pool(x.astype(np.float64), 7))
    assert error < 1e-6, f"seed={seed} size={height}x{width}: rel error {error:.2e}"


def test_dropout_acts_only_in_training(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    backbone = VGG16(width=2)  # no BatchNorm: train and eval differ only by dropout
    dropped = Classifier(backbone=backbone, num_classes=3, settings=ClassifierSettings(dropout_rate=0.5))
    kept = dropped.clone(settings=dataclasses.replace(dropped.settings, dropout_rate=0.0))
    variables = random_variables(dropped, images, rng)
    rngs = {"dropout": jax.random.key(seed, impl="rbg")}
    eval_logits = _apply(dropped, variables, images, train=False)
    np.testing.assert_allclose(
        _apply(kept, variables, images, train=True), eval_logits, rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}"
    )
    train_logits = _apply(dropped, variables, images, train=True, rngs=rngs)
    assert np.max(np.abs(train_logits - eval_logits)) > 1e-3, f"seed={seed}"


def test_bfloat16_classifier_returns_float32_logits(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    model = Classifier(
        backbone=ResNet(stage_sizes=(1, 1), block="basic", width=4, dtype=jnp.bfloat16),
        num_classes=3,
        settings=ClassifierSettings(feature="C3"),
        dtype=jnp.bfloat16,
    )
    full = model.clone(backbone=model.backbone.clone(dtype=None), dtype=None)
    variables = random_variables(full, images, rng)
    half_logits = _apply(model, variables, images, train=False)
    assert half_logits.dtype == jnp.float32
    error = max_relative_error(half_logits, _apply(full, variables, images, train=False))
    # Relative to the largest of 6 logits; 40 seeds gave at most 0.026.
    assert error < 0.1, f"seed={seed}: bf16 rel error {error:.3f}"


def test_unknown_feature_and_head_are_refused_by_name():
    backbone = ResNet(stage_sizes=(1, 1), block="basic", width=2)
    init = lambda m: jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    message = r"config\.model\.classifier\.feature='C5' is not an output of the backbone; it gives \['C2', 'C3'\]"
    with pytest.raises(ValueError, match=message):
        init(Classifier(backbone=backbone, num_classes=2))
    with pytest.raises(ValueError, match="unknown classifier head 'mlp'"):
        init(Classifier(backbone=backbone, num_classes=2, settings=ClassifierSettings(feature="C3", head="mlp")))

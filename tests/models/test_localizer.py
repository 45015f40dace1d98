"""Localizer heads against NumPy; box convention and conversion to (x1, y1, x2, y2) pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backbone_numpy_reference as ref
from random_weights import max_relative_error, random_variables
from vision_jax.models.backbones import ResNet
from vision_jax.models.localizer import Localizer, LocalizerSettings, normalized_cxcywh_to_xyxy

BACKBONE = ResNet(stage_sizes=(1, 1, 1), block="basic", width=4, stem="cifar")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("pooling,hidden_features", [("avg", 0), ("flatten", 16)])
def test_heads_share_pooled_features_and_match_numpy(pooling, hidden_features, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    settings = LocalizerSettings(feature="C4", pooling=pooling, hidden_features=hidden_features)
    model = Localizer(backbone=BACKBONE, num_classes=6, settings=settings)
    variables = random_variables(model, images, rng)
    # Large box-head weights push some sigmoids towards 0 and 1: the range must still hold.
    variables["params"]["box_head"]["kernel"] *= 20
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)

    params, stats = variables["params"], variables["batch_stats"]
    c4 = ref.resnet_v15(
        images, ref.ReferenceNet(params["backbone"], stats["backbone"], False), (1, 1, 1), "basic", 4, stem="cifar"
    )["C4"]
    pooled = c4.mean(axis=(1, 2)) if pooling == "avg" else c4.reshape(3, -1)
    if hidden_features:
        pooled = ref.relu(pooled @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    logits = pooled @ params["class_head"]["kernel"] + params["class_head"]["bias"]
    boxes = _sigmoid(pooled @ params["box_head"]["kernel"] + params["box_head"]["bias"])

    assert out["logits"].shape == (3, 6) and out["boxes"].shape == (3, 4)
    assert out["logits"].dtype == out["boxes"].dtype == jnp.float32
    assert np.all((out["boxes"] >= 0) & (out["boxes"] <= 1)), f"seed={seed}"
    for name, got, want in (("logits", out["logits"], logits), ("boxes", out["boxes"], boxes)):
        error = max_relative_error(got, want)
        assert error < 1e-4, f"seed={seed} {name}: rel error {error:.2e}"


def test_fresh_localizer_predicts_the_centred_half_size_box(seed):
    model = Localizer(
        backbone=ResNet(stage_sizes=(1,), block="basic", width=2, stem="cifar"),
        num_classes=3,
        settings=LocalizerSettings(feature="C2"),
    )
    images = np.random.default_rng(seed).normal(size=(2, 8, 8, 3)).astype(np.float32)
    out, _ = jax.jit(lambda k, x: model.init_with_output(k, x, train=False))(jax.random.key(seed, impl="rbg"), images)
    np.testing.assert_array_equal(out["boxes"], np.full((2, 4), 0.5, np.float32))


def test_cxcywh_to_pixel_corners_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(size=(5, 4)).astype(np.float32)
    height, width = rng.integers(16, 640, size=2)
    cx, cy, w, h = boxes.T.astype(np.float64)
    expected = np.stack(
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=-1
    )
    got = normalized_cxcywh_to_xyxy(boxes, int(height), int(width))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3, err_msg=f"seed={seed}")


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match=r"4 coordinates.*\(5, 3\)"):
        normalized_cxcywh_to_xyxy(np.zeros((5, 3)), 10, 10)
    model = Localizer(backbone=BACKBONE, num_classes=2, settings=LocalizerSettings(pooling="max"))
    with pytest.raises(ValueError, match="unknown localizer pooling 'max'"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False))
    with pytest.raises(ValueError, match=r"config\.model\.localizer\.feature='C5' is not an output of the backbone"):
        jax.eval_shape(
            lambda: model.clone(settings=LocalizerSettings(pooling="avg")).init(
                jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False
            )
        )

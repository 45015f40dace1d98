"""MobileNetV2 and EfficientNet-Lite0 backbones: the published shapes and parameter counts, the
table helpers, and the fine-tuning options (frozen stages, frozen BatchNorm, compute dtype).
Their numerics against float64 NumPy on real ImageNet weights: tests/weights/test_imagenet_checkpoints.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones import build_backbone, feature_channels, feature_strides
from vision_jax.models.classifier import Classifier

NAMES = ("mobilenet_v2", "efficientnet_lite0")
# Sandler et al. 2018 table 2 and EfficientNet-B0's table 1 (stages ending at strides 4..16),
# plus the 1280-channel head conv as C5, at 224².
PUBLISHED_FEATURES = {
    "mobilenet_v2": {"C2": (56, 24), "C3": (28, 32), "C4": (14, 96), "C5": (7, 1280)},
    "efficientnet_lite0": {"C2": (56, 24), "C3": (28, 40), "C4": (14, 112), "C5": (7, 1280)},
}
# torchvision's mobilenet_v2 IMAGENET1K_V1 "num_params"; TensorFlow's efficientnet-lite0 (4.65 M).
PUBLISHED_PARAMETERS = {"mobilenet_v2": 3_504_872, "efficientnet_lite0": 4_652_008}


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name", NAMES)
def test_features_at_224_and_classifier_parameters_equal_the_published_ones(name):
    backbone = build_backbone(name)
    features, _ = jax.eval_shape(
        lambda x: backbone.init_with_output(jax.random.key(0), x, train=False),
        jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32),
    )
    got = {key: (value.shape[1], value.shape[3]) for key, value in features.items()}
    assert got == PUBLISHED_FEATURES[name]
    assert feature_channels(name, width=backbone.width) == {key: c for key, (_, c) in got.items()}
    assert feature_strides(name) == {key: 224 // size for key, (size, _) in got.items()}
    model = Classifier(backbone=backbone, num_classes=1000)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
    assert _count(variables["params"]) == PUBLISHED_PARAMETERS[name]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [8, 16, 48])
def test_width_scales_the_channels_and_feature_channels_follows(name, width):
    backbone = build_backbone(name, width=width)
    features, _ = jax.eval_shape(
        lambda x: backbone.init_with_output(jax.random.key(0), x, train=False),
        jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32),
    )
    assert feature_channels(name, width=width) == {k: v.shape[3] for k, v in features.items()}
    assert {k: v.shape[1:3] for k, v in features.items()} == {"C2": (16, 24), "C3": (8, 12), "C4": (4, 6), "C5": (2, 3)}


def _gradients_and_stats(name, seed, **options):
    backbone = build_backbone(name, width=8, **options)
    images = jnp.asarray(np.random.default_rng(seed).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = jax.jit(lambda x: backbone.init(jax.random.key(seed), x, train=False))(images)

    def loss(params):
        features, state = backbone.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, images, train=True, mutable=["batch_stats"]
        )
        return sum(jnp.sum(f.astype(jnp.float32) ** 2) for f in features.values()), state

    grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    return variables, grads, state["batch_stats"]


@pytest.mark.parametrize("name", ["mobilenet_v2"])  # the trunk code is shared; one compile is enough
def test_frozen_stages_get_no_gradient_and_keep_their_statistics(name, seed):
    """frozen_stages=3: the stem, C2 (blocks 0-2) and C3 blocks are frozen; C4 onwards train."""
    variables, grads, stats = _gradients_and_stats(name, seed, frozen_stages=3)
    last_c3_block = {"mobilenet_v2": 5, "efficientnet_lite0": 4}[name]
    frozen = ["stem_conv", "stem_bn"] + [f"block{i}" for i in range(last_c3_block + 1)]
    for module in frozen:
        assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(grads[module])), (
            f"seed={seed}: {module}"
        )
    for module in (f"block{last_c3_block + 1}", "head_conv"):
        assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads[module])), (
            f"seed={seed}: {module}"
        )
    np.testing.assert_array_equal(stats["stem_bn"]["mean"], variables["batch_stats"]["stem_bn"]["mean"])
    assert not np.array_equal(stats["head_bn"]["mean"], variables["batch_stats"]["head_bn"]["mean"])


@pytest.mark.parametrize("name", NAMES)
def test_frozen_norm_gives_the_inference_output_in_training(name, seed):
    backbone = build_backbone(name, width=8, norm="frozen")
    images = jnp.asarray(np.random.default_rng(seed).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = backbone.init(jax.random.key(0), images, train=False)
    trained, state = backbone.apply(variables, images, train=True, mutable=["batch_stats"])
    inferred = backbone.apply(variables, images, train=False)
    for key in inferred:
        np.testing.assert_array_equal(trained[key], inferred[key], err_msg=f"seed={seed}: {key}")
    assert jax.tree_util.tree_all(jax.tree.map(np.array_equal, state["batch_stats"], variables["batch_stats"]))


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_compute_keeps_float32_parameters(name):
    backbone = build_backbone(name, width=8, dtype=jnp.bfloat16)
    features, variables = jax.eval_shape(
        lambda x: backbone.init_with_output(jax.random.key(0), x, train=False),
        jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32),
    )
    assert {f.dtype for f in features.values()} == {jnp.dtype(jnp.bfloat16)}
    assert {p.dtype for p in jax.tree_util.tree_leaves(variables["params"])} == {jnp.dtype(jnp.float32)}


def test_bad_options_are_refused_by_name():
    images = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        build_backbone("mobilenet_v2", width=8, norm="group").init(jax.random.key(0), images, train=False)
    with pytest.raises(ValueError, match="frozen_stages must be in"):
        build_backbone("efficientnet_lite0", width=8, frozen_stages=6).init(jax.random.key(0), images, train=False)

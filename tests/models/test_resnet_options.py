"""ResNet options: initialisation, mixed precision, cross-replica and frozen BatchNorm, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backbone_numpy_reference as ref
from random_weights import max_relative_error, random_variables
from vision_jax.models.backbones import ResNet


def _leaves(tree):
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_init_is_he_fan_out_normal_with_zero_init_residual(block, seed):
    """torchvision: conv ~ N(0, 2/(k*k*out)) untruncated; BN scale 1, bias 0; with
    zero_init_residual the last BN of every block starts at scale 0."""
    model = ResNet(stage_sizes=(1, 1), block=block, width=32, stem="cifar", zero_init_residual=True)
    # rbg keys compile in seconds where threefry takes far longer on this machine.
    params = _leaves(
        jax.jit(model.init, static_argnames="train")(
            jax.random.key(seed, impl="rbg"), jnp.zeros((1, 8, 8, 3)), train=False
        )["params"]
    )
    last_bn = "bn2" if block == "basic" else "bn3"
    checked_kernels = 0
    for path, value in params.items():
        if path.endswith("['kernel']") and value.size >= 4096:
            kh, kw, _, out = value.shape
            expected_std = np.sqrt(2.0 / (kh * kw * out))
            assert abs(value.std() / expected_std - 1) < 0.06, f"seed={seed} {path}: {value.std()}"
            assert abs(value.mean()) < 0.1 * expected_std, f"seed={seed} {path}"
            # A normal has 4.55% of its mass beyond 2 sigma; a 2-sigma truncated normal has none.
            tail = np.mean(np.abs(value) > 2 * expected_std)
            assert 0.03 < tail < 0.06, f"seed={seed} {path}: tail {tail}"
            checked_kernels += 1
        elif path.endswith("['scale']"):
            want = 0.0 if f"['{last_bn}']" in path else 1.0
            assert np.all(value == want), f"{path}: {value[:4]}"
        elif path.endswith("['bias']"):
            assert np.all(value == 0), path
    assert checked_kernels >= 3


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32_output(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1, 1, 1), block="bottleneck", width=4)
    bf16_model = model.clone(dtype=jnp.bfloat16)
    variables = random_variables(model, images, rng)
    param_dtypes = jax.eval_shape(lambda: bf16_model.init(jax.random.key(0), jnp.asarray(images), train=False))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(param_dtypes)} == {np.dtype("float32")}

    apply = lambda m: jax.jit(m.apply, static_argnames="train")(variables, images, train=False)
    full, half = apply(model), apply(bf16_model)
    for level in ("C2", "C3", "C4", "C5"):
        assert half[level].dtype == jnp.bfloat16, level
        # bf16 keeps 8 mantissa bits; errors compound over ~20 layers.
        error = max_relative_error(half[level].astype(jnp.float32), full[level])
        assert error < 0.05, f"seed={seed} {level}: bf16 rel error {error:.3f}"


def test_cross_replica_batch_norm_equals_full_batch_statistics(seed):
    """With bn_axis_name, two replicas with half the batch each normalise with (and store) the
    statistics of the whole batch."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1), block="basic", width=4, stem="cifar")
    variables = random_variables(model, images, rng)

    def train_apply(m, x):
        return m.apply(variables, x, train=True, mutable=["batch_stats"])

    full_features, full_stats = jax.jit(lambda x: train_apply(model, x))(images)
    shards = images.reshape(2, 2, 16, 16, 3)
    for axis_name, should_match in (("data", True), (None, False)):
        replicated = model.clone(bn_axis_name=axis_name)
        features, stats = jax.jit(jax.vmap(lambda x: train_apply(replicated, x), axis_name="data"))(shards)
        error = max_relative_error(features["C3"].reshape(full_features["C3"].shape), full_features["C3"])
        stats_error = max(
            max_relative_error(leaf[0], _leaves(full_stats)[path]) for path, leaf in _leaves(stats).items()
        )
        if should_match:
            assert error < 1e-4 and stats_error < 1e-5, f"seed={seed}: {error:.2e} {stats_error:.2e}"
        else:  # per-replica statistics: the check above is sensitive to the option.
            assert error > 1e-3 and stats_error > 1e-3, f"seed={seed}: {error:.2e} {stats_error:.2e}"


def test_frozen_stages_get_no_gradient_and_keep_their_statistics(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1, 1), block="basic", width=4, stem="cifar", frozen_stages=2)
    variables = random_variables(model, images, rng)

    def loss(params):
        features, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, images, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(features["C4"] ** 2), updates

    grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    old_stats, new_stats = _leaves(variables["batch_stats"]), _leaves(updates["batch_stats"])
    for path, grad in _leaves(grads).items():
        frozen = not path.startswith(("['layer2']", "['layer3']"))  # stem and layer1 (C2)
        if frozen:
            assert np.all(grad == 0), f"seed={seed} frozen {path} got a gradient"
        else:
            assert np.any(grad != 0), f"seed={seed} trainable {path} got no gradient"
    for path, old in old_stats.items():
        changed = np.any(new_stats[path] != old)
        frozen = not path.startswith(("['layer2']", "['layer3']"))
        assert changed != frozen, f"seed={seed} {path}: frozen={frozen} but changed={changed}"


def test_frozen_norm_uses_running_statistics_in_train_mode(seed):
    """norm='frozen' computes the inference-mode network even with train=True, and its
    BatchNorm affine gets no gradient (detectron2 FrozenBatchNorm2d)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1), block="basic", width=4, stem="cifar", norm="frozen")
    variables = random_variables(model, images, rng)
    features, updates = jax.jit(lambda v: model.apply(v, images, train=True, mutable=["batch_stats"]))(variables)
    expected = ref.resnet_v15(
        images,
        ref.ReferenceNet(variables["params"], variables["batch_stats"], train=False),
        (1, 1),
        "basic",
        4,
        stem="cifar",
    )
    for level, want in expected.items():
        error = max_relative_error(features[level], want)
        assert error < 1e-4, f"seed={seed} {level}: rel error {error:.2e}"
    for path, value in _leaves(updates["batch_stats"]).items():
        assert np.array_equal(value, _leaves(variables["batch_stats"])[path]), path

    grads = jax.jit(
        jax.grad(
            lambda p: jnp.sum(
                model.apply(
                    {"params": p, "batch_stats": variables["batch_stats"]}, images, train=True, mutable=["batch_stats"]
                )[0]["C3"]
            )
        )
    )(variables["params"])
    for path, grad in _leaves(grads).items():
        is_norm = path.endswith(("['scale']", "['bias']"))
        assert np.all(grad == 0) == is_norm, f"seed={seed} {path}"


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(block="basic2"), "unknown block 'basic2'"),
        (dict(stem="coco"), "unknown stem 'coco'"),
        (dict(norm="group"), "unknown norm 'group'"),
        (dict(stage_sizes=(1, 1, 1, 1, 1)), "stage_sizes must be 1 to 4"),
        (dict(frozen_stages=6), r"frozen_stages must be in \[0, 5\]"),
    ],
)
def test_bad_configuration_is_refused_by_name(fields, message):
    model = ResNet(**{"stage_sizes": (1, 1, 1, 1), "block": "basic", "width": 2, **fields})
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_non_nhwc_input_is_refused_with_its_shape():
    model = ResNet(stage_sizes=(1,), block="basic", width=2)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\].*\(32, 32, 3\)"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((32, 32, 3)), train=False))

"""VGG-16 against a float64 NumPy implementation with the same random weights."""

import jax
import numpy as np
import pytest

import backbone_numpy_reference as ref
from random_weights import max_relative_error, random_variables
from vision_jax.models.backbones import VGG16


@pytest.mark.parametrize("batch_norm,train", [(False, False), (True, False), (True, True)])
def test_vgg16_matches_numpy_reference(batch_norm, train, seed):
    rng = np.random.default_rng(seed)
    # 40 = 2^3 * 5: pools 1-3 divide evenly, pool4 and pool5 floor (5 -> 2 -> 1).
    images = rng.normal(size=(2, 40, 40, 3)).astype(np.float32)
    model = VGG16(batch_norm=batch_norm, width=4)
    variables = random_variables(model, images, rng)

    if train:
        features, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables, images
        )
    else:
        features = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    net = ref.ReferenceNet(variables["params"], variables.get("batch_stats"), train=train)
    expected = ref.vgg16(images, net, batch_norm=batch_norm)

    assert sorted(features) == sorted(expected), f"seed={seed}"
    for name, want in expected.items():
        error = max_relative_error(features[name], want)
        assert error < 1e-4, f"seed={seed} {name}: rel error {error:.2e}"
    if train:
        want_stats = dict(jax.tree_util.tree_leaves_with_path(net.new_batch_stats))
        got_stats = jax.tree_util.tree_leaves_with_path(updates["batch_stats"])
        assert len(got_stats) == len(want_stats) == 26, f"seed={seed}"
        for path, value in got_stats:
            error = max_relative_error(value, want_stats[path])
            assert error < 1e-4, f"seed={seed} {jax.tree_util.keystr(path)}: rel error {error:.2e}"


def test_vgg16_ceil_mode_matches_torch_ceil_pooling(seed):
    """Odd sizes round up, as SSD300 needs at pool3 (75 -> 38): 75 -> 38, 19, 10, 5, 3."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(1, 75, 75, 3)).astype(np.float32)
    model = VGG16(width=2, ceil_mode=True)
    variables = random_variables(model, images, rng)
    features = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    expected = ref.vgg16(
        images, ref.ReferenceNet(variables["params"], None, train=False), batch_norm=False, ceil_mode=True
    )
    assert [features[f"C{b}"].shape[1] for b in range(1, 6)] == [38, 19, 10, 5, 3], f"seed={seed}"
    for name, want in expected.items():
        error = max_relative_error(features[name], want)
        assert error < 1e-4, f"seed={seed} {name}: rel error {error:.2e}"

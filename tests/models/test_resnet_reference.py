"""ResNet v1.5 against a float64 NumPy implementation with the same random weights.

Catches padding (flax 'SAME' vs torchvision's symmetric padding), stride placement (v1.5),
projection-shortcut and BatchNorm mistakes: tiny widths, odd and even input sizes.
"""

import jax
import numpy as np
import pytest

import backbone_numpy_reference as ref
from random_weights import max_relative_error, random_variables
from vision_jax.models.backbones import ResNet, ResNetStage

# (block, width, stage_sizes): two blocks in the first stages cover identity shortcuts, the
# first block of each later stage a strided projection; bottleneck's first block a 1x1 one.
CASES = [("basic", 8, (2, 2, 1, 1)), ("bottleneck", 4, (2, 2, 1, 1))]


def _init(model, images, seed):
    return random_variables(model, images, np.random.default_rng(seed + 1))


# Even sizes are where flax 'SAME' pads (2, 3) instead of torchvision's (3, 3) for the 7x7/2
# stem; the odd, non-square size checks floor rounding of every stride.
@pytest.mark.parametrize("height,width_px", [(32, 32), (37, 45)])
@pytest.mark.parametrize("block,width,stage_sizes", CASES)
def test_inference_matches_numpy_reference(block, width, stage_sizes, height, width_px, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, height, width_px, 3)).astype(np.float32)
    model = ResNet(stage_sizes=stage_sizes, block=block, width=width)
    variables = _init(model, images, seed)

    features = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    expected = ref.resnet_v15(
        images, ref.ReferenceNet(variables["params"], variables["batch_stats"], train=False), stage_sizes, block, width
    )

    assert sorted(features) == ["C2", "C3", "C4", "C5"]
    for level, want in expected.items():
        error = max_relative_error(features[level], want)
        assert error < 1e-4, f"seed={seed} size={height}x{width_px} {level}: rel error {error:.2e}"


def test_cifar_stem_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=4, stem="cifar")
    variables = _init(model, images, seed)
    features = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    expected = ref.resnet_v15(
        images,
        ref.ReferenceNet(variables["params"], variables["batch_stats"], train=False),
        (1, 1, 1, 1),
        "basic",
        4,
        stem="cifar",
    )
    for level, want in expected.items():
        error = max_relative_error(features[level], want)
        assert error < 1e-4, f"seed={seed} {level}: rel error {error:.2e}"
    # cifar stem: no downsampling before C2, so strides 1, 2, 4, 8.
    assert [features[f"C{l}"].shape[1] for l in range(2, 6)] == [28, 14, 7, 4], f"seed={seed}"


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_train_mode_batch_norm_matches_numpy_reference(block, seed):
    """Train mode normalises with batch statistics and updates every running mean/var as
    new = 0.9 * old + 0.1 * batch (biased batch variance)."""
    rng = np.random.default_rng(seed)
    # cifar stem keeps maps large (C5 4x4) so batch variances are well conditioned.
    images = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1, 1, 1), block=block, width=4, stem="cifar")
    variables = _init(model, images, seed)

    features, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, images)
    net = ref.ReferenceNet(variables["params"], variables["batch_stats"], train=True)
    expected = ref.resnet_v15(images, net, (1, 1, 1, 1), block, 4, stem="cifar")

    for level, want in expected.items():
        error = max_relative_error(features[level], want)
        assert error < 1e-4, f"seed={seed} {level}: rel error {error:.2e}"
    got_stats = jax.tree_util.tree_leaves_with_path(updates["batch_stats"])
    want_stats = dict(jax.tree_util.tree_leaves_with_path(net.new_batch_stats))
    assert len(got_stats) == len(want_stats) > 0
    for path, value in got_stats:
        error = max_relative_error(value, want_stats[path])
        assert error < 1e-4, f"seed={seed} {jax.tree_util.keystr(path)}: rel error {error:.2e}"


def test_resnet_stage_reruns_a_stage_from_its_own_variables(seed):
    """ResNetStage alone (as a C4 detector's res5 head) computes what layer4 computes in a ResNet."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    model = ResNet(stage_sizes=(1, 1, 1, 2), block="bottleneck", width=4)
    variables = _init(model, images, seed)
    features = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    res5 = ResNetStage(block="bottleneck", num_blocks=2, features=32, strides=2)
    stage_vars = {c: variables[c]["layer4"] for c in ("params", "batch_stats")}
    out = jax.jit(res5.apply, static_argnames="train")(stage_vars, features["C4"], train=False)
    net = ref.ReferenceNet(variables["params"], variables["batch_stats"], train=False)
    expected = ref.resnet_v15(images, net, (1, 1, 1, 2), "bottleneck", 4)["C5"]
    error = max_relative_error(out, expected)
    assert error < 1e-4, f"seed={seed}: rel error {error:.2e}"

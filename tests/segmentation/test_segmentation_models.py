"""FCN-32s/16s/8s and SegNet against float64 NumPy forward passes with random weights, on sizes that are
not multiples of 32; the full-size VGG-16 FCN-8s config traced with eval_shape."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import segmentation_reference as ref

from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.models.backbones import VGG16, ResNet
from vision_jax.models.segmentation.fcn import FCN
from vision_jax.models.segmentation.segnet import SegNet
from vision_jax.models.segmentation.settings import FCNSettings, SegNetSettings
from vision_jax.tasks.segmentation import SegmentationTask
from vision_jax.train.config import load_config_file

TINY_RESNET = ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=4)


def fcn_reference(model: FCN, variables: dict, images: np.ndarray) -> np.ndarray:
    """FCN head in NumPy on the backbone's own features of the zero-padded input."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (0, -height % 32), (0, -width % 32), (0, 0)))
    backbone_vars = {k: v["backbone"] for k, v in variables.items()}
    features = ref.to_float64(model.backbone.apply(backbone_vars, jnp.asarray(padded, jnp.float32), train=False))
    p = ref.to_float64(variables["params"])
    names = {"32s": ["C5"], "16s": ["C5", "C4"], "8s": ["C5", "C4", "C3"]}[model.variant]
    x = features["C5"]
    if model.settings.head_features:
        x = np.maximum(ref.conv2d_same(x, p["fc6"]["kernel"], p["fc6"]["bias"]), 0)
        x = np.maximum(ref.conv2d_same(x, p["fc7"]["kernel"], p["fc7"]["bias"]), 0)
    score = ref.conv2d_same(x, p["score_C5"]["kernel"], p["score_C5"]["bias"])
    for name in names[1:]:
        score = ref.transposed_conv(score, p[f"up_to_{name}"]["kernel"], 2)
        score = score + ref.conv2d_same(features[name], p[f"score_{name}"]["kernel"], p[f"score_{name}"]["bias"])
    factor = padded.shape[1] // score.shape[1]
    return ref.fixed_bilinear_upsample(score, factor)[:, :height, :width]


@pytest.mark.parametrize(
    "variant,backbone,head_features",
    [
        ("32s", TINY_RESNET, 0),
        ("16s", VGG16(width=2), 6),
        ("8s", VGG16(width=2, batch_norm=True), 6),
    ],
)
def test_fcn_matches_numpy_on_sizes_that_are_not_multiples_of_32(variant, backbone, head_features, seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(33, 80, size=2)
    images = rng.normal(size=(2, height, width, 3)).astype(np.float32)
    settings = FCNSettings(head_features=head_features, head_kernel_size=3, dropout_rate=0.5)
    model = FCN(backbone=backbone, num_classes=3, variant=variant, settings=settings)
    variables = ref.random_variables(model, images, rng)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert logits.shape == (2, height, width, 3) and logits.dtype == jnp.float32
    expected = fcn_reference(model, variables, images)
    error = np.max(np.abs(np.asarray(logits, np.float64) - expected)) / np.max(np.abs(expected))
    assert error < 1e-4, f"seed={seed} size={height}x{width}: relative error {error:.2e}"


def segnet_reference(variables: dict, images: np.ndarray, convs_per_block) -> np.ndarray:
    num_blocks = len(convs_per_block)
    height, width_px = images.shape[1:3]
    x = np.pad(
        images.astype(np.float64), ((0, 0), (0, -height % 2**num_blocks), (0, -width_px % 2**num_blocks), (0, 0))
    )
    p, s = ref.to_float64(variables["params"]), ref.to_float64(variables["batch_stats"])

    def conv_bn_relu(x, part, name):
        x = ref.conv2d_same(x, p[part][f"conv{name}"]["kernel"], p[part][f"conv{name}"]["bias"])
        return np.maximum(ref.batch_norm(x, p[part][f"bn{name}"], s[part][f"bn{name}"]), 0)

    switches = []
    for block in range(num_blocks):
        for index in range(convs_per_block[block]):
            x = conv_bn_relu(x, "encoder", f"{block + 1}_{index + 1}")
        size = x.shape[1:3]
        x, positions = ref.max_pool_argmax_2x2(x)
        switches.append((positions, size))
    for block in reversed(range(num_blocks)):
        positions, size = switches[block]
        x = ref.unpool(x, positions, size)
        for index in range(convs_per_block[block]):
            x = conv_bn_relu(x, "decoder", f"{block + 1}_{index + 1}")
    logits = ref.conv2d_same(x, p["classifier"]["kernel"], p["classifier"]["bias"])
    return logits[:, :height, :width_px]


def test_segnet_matches_numpy_unpooling_at_the_encoder_argmax(seed):
    rng = np.random.default_rng(seed)
    convs_per_block, width = (1, 2), 3
    height, width_px = rng.integers(5, 14, size=2)
    images = rng.normal(size=(2, height, width_px, 3)).astype(np.float32)
    model = SegNet(num_classes=3, width=width, settings=SegNetSettings(convs_per_block=convs_per_block))
    variables = ref.random_variables(model, images, rng)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert logits.shape == (2, height, width_px, 3)
    expected = segnet_reference(variables, images, convs_per_block)
    error = np.max(np.abs(np.asarray(logits, np.float64) - expected)) / np.max(np.abs(expected))
    assert error < 1e-4, f"seed={seed} size={height}x{width_px}: relative error {error:.2e}"


def test_unknown_variant_and_missing_skip_are_refused():
    images = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="unknown FCN variant '4s'"):
        jax.eval_shape(
            lambda: FCN(backbone=TINY_RESNET, num_classes=2, variant="4s").init(jax.random.key(0), images, train=False)
        )
    two_stage = ResNet(stage_sizes=(1, 1), block="basic", width=2)  # returns C2, C3 only
    with pytest.raises(ValueError, match="feature='C5' is not an output of the backbone"):
        jax.eval_shape(lambda: FCN(backbone=two_stage, num_classes=2).init(jax.random.key(0), images, train=False))


def vgg16_fcn8s_parameter_count(num_classes: int, head: int = 4096, fc6_kernel: int = 7) -> int:
    """Counted from the architecture: VGG-16's 13 convs, fc6/fc7, three 1x1 scores, two 4x4 x2 upsamplings."""
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(9 * c_in * c_out + c_out for c_in, c_out in itertools.pairwise(channels))
    fc = fc6_kernel**2 * 512 * head + head + head * head + head
    scores = (head + 1) * num_classes + (512 + 1) * num_classes + (256 + 1) * num_classes
    upsampling = 2 * 4 * 4 * num_classes * num_classes
    return convs + fc + scores + upsampling


def test_full_size_vgg16_fcn8s_config_builds_and_traces(repo_root):
    import os

    config = load_config_file(os.path.join(repo_root, "configs/segmentation/pets_fcn8s_vgg16.py"))
    info = DatasetInfo(
        name="oxford_iiit_pet",
        num_classes=1,
        class_names=("pet",),
        num_examples={"train": 3680},
        image_shape=(None, None, 3),
        has=frozenset({"segmentation"}),
        segmentation_class_names=("background", "pet"),
    )
    task = SegmentationTask(config)
    model = task.build_model(info)
    size = config.data.image_size
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), **task.init_inputs(info), train=False))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    assert count == vgg16_fcn8s_parameter_count(2), count
    for shape in ((2, size, size, 3), (1, 375, 500, 3)):  # a pets-like size, not a multiple of 32
        logits = jax.eval_shape(
            lambda v, x: model.apply(v, x, train=False), variables, jax.ShapeDtypeStruct(shape, jnp.float32)
        )
        assert logits.shape == shape[:3] + (2,) and logits.dtype == jnp.float32
    batch = {
        "image": jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32),
        "segmentation": jax.ShapeDtypeStruct((2, size, size), jnp.int32),
    }
    loss, (metrics, _) = jax.eval_shape(lambda v, b: task.loss(model, v, b, jax.random.key(0), True), variables, batch)
    assert loss.shape == () and set(metrics) == {"pixel_accuracy"}
    predictions = jax.eval_shape(lambda v, b: task.predict(model, v, b), variables, batch)
    assert predictions["labels"].shape == (2, size, size) and predictions["labels"].dtype == jnp.int32

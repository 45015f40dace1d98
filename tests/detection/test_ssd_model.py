"""SSD model layout: SSD300/SSD512 sources and default boxes against the paper's / torchvision's
published layout (shapes traced with jax.eval_shape, no FLOPs), L2Norm and the head's box order
against NumPy; the detector contract's losses and detections against the float64 reference
(ssd_reference.py, background last); cross-replica BatchNorm; config errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ssd_reference as ref

from vision_jax.models.ssd import (
    SSD512_ASPECT_RATIOS,
    SSD512_EXTRAS,
    SSD512_SCALES,
    SSD512_STEPS,
    SSDSettings,
    build_ssd,
)
from vision_jax.models.ssd.features import L2Norm
from vision_jax.models.ssd.model import SSD
from vision_jax.train.config import base_config


def vgg_config(size: int):
    c = base_config("detection", model="ssd")
    c.model.backbone, c.model.width = "vgg16", 64
    c.data.image_size = size
    if size == 512:
        s = c.model.ssd
        s.aspect_ratios, s.scales, s.steps, s.extras = SSD512_ASPECT_RATIOS, SSD512_SCALES, SSD512_STEPS, SSD512_EXTRAS
    return c


def traced_sources_and_outputs(model: SSD, size: int):
    images = jnp.zeros((1, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), images, train=False))
    maps = jax.eval_shape(lambda v: model.apply(v, images, False, method=lambda m, x, t: m.features(x, t)), variables)
    raw = jax.eval_shape(
        lambda v: model.apply(v, images, train=False, method=lambda m, x, train: m.head(m.features(x, train))),
        variables,
    )
    return variables, maps, raw


@pytest.mark.parametrize(
    "size, grids, total",
    [(300, [38, 19, 10, 5, 3, 1], 8732), (512, [64, 32, 16, 8, 4, 2, 1], 24564)],
)
def test_vgg_ssd_sources_and_default_boxes_follow_the_paper(size, grids, total):
    config = vgg_config(size)
    model = build_ssd(config, num_classes=20)
    variables, maps, (logits, deltas) = traced_sources_and_outputs(model, size)
    assert [m.shape[1] for m in maps] == grids
    assert [m.shape[-1] for m in maps] == [512, 1024, 512, 256, 256, 256] + [256] * (size == 512)
    assert logits.shape == (1, total, 21) and deltas.shape == (1, total, 4)
    s = config.model.ssd
    fake_maps = [jnp.zeros((1, g, g, 1)) for g in grids]
    boxes = model.apply({}, fake_maps, (size, size), method=lambda m, f, hw: m.default_boxes(f, hw))
    expected = ref.default_boxes([(g, g) for g in grids], (size, size), s.aspect_ratios, s.scales, s.steps)
    assert boxes.shape == (total, 4)
    np.testing.assert_allclose(np.asarray(boxes), expected, atol=2e-3)
    # conv4_3's L2Norm scale starts at 20 for each of its 512 channels.
    scale = variables["params"]["features"]["conv4_3_l2norm"]["scale"]
    assert scale.shape == (512,)


def test_l2norm_normalises_each_location_and_scales_by_twenty(rng, seed):
    x = rng.normal(0, 30, (2, 3, 4, 5)).astype(np.float32)
    module = L2Norm(scale_init=20.0)
    variables = module.init(jax.random.key(0), x)
    np.testing.assert_allclose(np.asarray(variables["params"]["scale"]), np.full(5, 20.0))
    expected = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True) * 20.0
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), expected, rtol=1e-5, err_msg=f"seed={seed}")


class _Maps(nn.Module):
    """Stand-in sources: fixed random maps, so the head's flattening can be checked by hand."""

    maps: tuple

    def __call__(self, images, train):
        return [jnp.asarray(m) for m in self.maps]


def test_head_flattens_location_major_then_box_like_the_default_boxes(rng, seed):
    maps = (rng.normal(size=(1, 4, 4, 3)).astype(np.float32), rng.normal(size=(1, 2, 2, 3)).astype(np.float32))
    settings = SSDSettings(aspect_ratios=((2,), (2, 3)), scales=(0.2, 0.5, 0.9), steps=())
    model = SSD(features=_Maps(maps), num_classes=2, settings=settings)
    images = jnp.zeros((1, 32, 32, 3))
    variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(images)
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, False, method=lambda m, x, t: m.head(m.features(x, t))))(
        variables, images
    )
    logits = np.asarray(logits)
    # Box k of location (i, j) on level 0 is output channel block k of the 3x3 conv at (i, j).
    kernel = np.asarray(variables["params"]["head"]["cls_0"]["kernel"], np.float64)  # [3, 3, 3, 4 * 3]
    bias = np.asarray(variables["params"]["head"]["cls_0"]["bias"], np.float64)
    padded = np.pad(maps[0][0].astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    i, j, k = (int(v) for v in rng.integers(0, 4, 3))
    conv = np.einsum("hwc,hwco->o", padded[i : i + 3, j : j + 3], kernel) + bias
    np.testing.assert_allclose(
        logits[0, (i * 4 + j) * 4 + k], conv[k * 3 : (k + 1) * 3], rtol=1e-4, atol=1e-5, err_msg=f"seed={seed}"
    )
    assert logits.shape == (1, 16 * 4 + 4 * 6, 3)


IMAGE = 32
TOY_SHAPES = ((4, 4), (2, 2))
TOY_SETTINGS = SSDSettings(
    aspect_ratios=((2,), (2, 3)),
    scales=(0.2, 0.45, 0.9),
    steps=(),
    score_threshold=0.05,
    nms_threshold=0.45,
    topk_candidates=20,
    max_detections=30,
)


def toy_model(rng, batch: int, num_classes: int):
    """An SSD on fixed random source maps (4x4 and 2x2 for a 32x32 input, 88 default boxes)."""
    maps = tuple(rng.normal(size=(batch, h, w, 6)).astype(np.float32) for h, w in TOY_SHAPES)
    return SSD(features=_Maps(maps), num_classes=num_classes, settings=TOY_SETTINGS)


def reference_targets(rng, anchors, num_classes: int, num_rows: int = 4):
    """Random ground truth (redrawn on near ties of matching) and its reference labels [A] (class k
    -> k, background -> C) and encoded targets [A, 4]."""
    while True:
        xy = rng.uniform(0, IMAGE - 6, (num_rows, 2))
        boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(4, 20, (num_rows, 2)), IMAGE)], 1).astype(np.float32)
        valid = np.arange(num_rows) < int(rng.integers(1, num_rows + 1))
        crowd = valid & (rng.uniform(size=num_rows) < 0.2)
        if not ref.near_tie(ref.iou(boxes[valid & ~crowd], anchors), TOY_SETTINGS.iou_threshold):
            break
    classes = rng.integers(0, num_classes, num_rows).astype(np.int32)
    matched, positive = ref.match(boxes, valid, crowd, anchors, TOY_SETTINGS.iou_threshold)
    labels = np.where(positive, classes[matched], num_classes)
    targets = np.zeros((len(anchors), 4))
    targets[positive] = ref.encode(boxes[matched[positive]], anchors[positive])
    return {"boxes": boxes, "classes": classes, "valid": valid, "is_crowd": crowd}, labels, targets


def test_training_losses_follow_the_reference_with_background_last(rng, seed):
    batch, num_classes = 2, 3
    model = toy_model(rng, batch, num_classes)
    images = jnp.zeros((batch, IMAGE, IMAGE, 3))
    variables = model.init(jax.random.key(0, impl="rbg"), images, train=False)
    assert variables["params"]["head"]["cls_0"]["kernel"].shape[-1] == 4 * (num_classes + 1)
    anchors = ref.default_boxes(TOY_SHAPES, (IMAGE, IMAGE), TOY_SETTINGS.aspect_ratios, TOY_SETTINGS.scales)
    drawn = [reference_targets(rng, anchors, num_classes) for _ in range(batch)]
    targets = {key: np.stack([d[0][key] for d in drawn]) for key in drawn[0][0]}
    labels, box_targets = np.stack([d[1] for d in drawn]), np.stack([d[2] for d in drawn])
    out = jax.jit(lambda v, x, t: model.apply(v, x, None, t, train=True))(variables, images, targets)
    assert set(out) == {"losses", "metrics"} and set(out["losses"]) == {"loss_cls", "loss_box_reg"}
    logits, deltas = model.apply(variables, images, False, method=lambda m, x, t: m.head(m.features(x, t)))
    loss_cls, loss_box = ref.multibox_loss(np.asarray(logits), np.asarray(deltas), labels, box_targets)
    np.testing.assert_allclose(float(out["losses"]["loss_cls"]), loss_cls, rtol=1e-5, err_msg=f"seed={seed}")
    # The model encodes its box targets in float32, the reference in float64.
    np.testing.assert_allclose(float(out["losses"]["loss_box_reg"]), loss_box, rtol=1e-4, err_msg=f"seed={seed}")
    num_positive = (labels != num_classes).sum() / batch
    np.testing.assert_allclose(float(out["metrics"]["num_positive_boxes"]), num_positive, err_msg=f"seed={seed}")


def test_detections_follow_the_reference_with_background_last(rng, seed):
    batch, num_classes = 2, 3
    model = toy_model(rng, batch, num_classes)
    images = jnp.zeros((batch, IMAGE, IMAGE, 3))
    variables = model.init(jax.random.key(0, impl="rbg"), images, train=False)
    # Larger logits than the init's, so that scores spread over (0, 1) and NMS has work to do.
    variables = jax.tree.map(lambda x: x * 4.0, variables)
    image_sizes = np.asarray([[IMAGE, IMAGE - 6], [IMAGE - 3, IMAGE]], np.float32)
    out = jax.jit(lambda v, x, hw: model.apply(v, x, hw, train=False))(variables, images, image_sizes)
    logits, deltas = model.apply(variables, images, False, method=lambda m, x, t: m.head(m.features(x, t)))
    anchors = ref.default_boxes(TOY_SHAPES, (IMAGE, IMAGE), TOY_SETTINGS.aspect_ratios, TOY_SETTINGS.scales)
    s = TOY_SETTINGS
    for b in range(batch):
        expected = ref.detect(
            np.asarray(logits[b]),
            np.asarray(deltas[b]),
            anchors,
            image_sizes[b],
            s.score_threshold,
            s.nms_threshold,
            s.topk_candidates,
            s.max_detections,
        )
        valid = np.asarray(out["valid"][b])
        msg = f"seed={seed} image={b}"
        assert valid.sum() == len(expected[1]) > 0 and valid[: valid.sum()].all(), msg
        np.testing.assert_allclose(np.asarray(out["boxes"][b])[valid], expected[0], atol=1e-3, err_msg=msg)
        np.testing.assert_allclose(np.asarray(out["scores"][b])[valid], expected[1], rtol=1e-5, err_msg=msg)
        np.testing.assert_array_equal(np.asarray(out["classes"][b])[valid], expected[2], err_msg=msg)


def resnet_config(cross_replica_bn: bool):
    c = base_config("detection", model="ssd")
    c.model.backbone, c.model.width, c.model.cross_replica_bn = "resnet18", 8, cross_replica_bn
    s = c.model.ssd
    s.resnet_sources, s.resnet_source_channels, s.extras = ("C4", "C5"), 8, ((8, 16, 3, 2, 1),)
    s.aspect_ratios, s.scales, s.steps, s.l2norm = ((2,), (2,), (2,)), (0.2, 0.4, 0.7, 0.9), (), False
    return c


@pytest.mark.parametrize("cross_replica_bn", [True, False])
def test_cross_replica_bn_reaches_the_source_modules_and_extras(rng, seed, cross_replica_bn):
    model = build_ssd(resnet_config(cross_replica_bn), num_classes=2)
    replicas = rng.normal(size=(2, 2, 64, 64, 3)).astype(np.float32)  # [replica, batch, H, W, 3]
    variables = model.init(jax.random.key(0, impl="rbg"), jnp.zeros((1, 64, 64, 3)), train=False)

    def replica_stats(images):
        _, state = model.apply(
            variables, images, True, method=lambda m, x, t: m.features(x, t), mutable=["batch_stats"]
        )
        return state["batch_stats"]

    stats = jax.jit(jax.vmap(replica_stats, axis_name="data"))(replicas)["features"]
    own = {key: value for key, value in stats.items() if key != "resnet"}  # the source modules and extras
    assert sorted(own) == ["C4_module_bn", "C5_module_bn", "extras"]
    for path, leaf in jax.tree_util.tree_leaves_with_path(own):
        same = np.allclose(leaf[0], leaf[1], rtol=1e-5, atol=1e-6)
        assert same == cross_replica_bn, f"seed={seed}: {jax.tree_util.keystr(path)} equal across replicas: {same}"


def test_aspect_ratios_must_match_the_number_of_sources():
    config = vgg_config(300)
    config.model.ssd.aspect_ratios = ((2,),) * 5
    with pytest.raises(ValueError, match="aspect_ratios has 5 levels"):
        build_ssd(config, num_classes=20)

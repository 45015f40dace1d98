"""SSD model layout: SSD300/SSD512 sources and default boxes against the paper's / torchvision's
published layout (shapes traced with jax.eval_shape, no FLOPs), L2Norm and the head's box order
against NumPy, and config errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ssd_reference as ref

from vision_jax.models.ssd.features import L2Norm
from vision_jax.models.ssd.model import (
    SSD,
    SSD512_ASPECT_RATIOS,
    SSD512_EXTRAS,
    SSD512_SCALES,
    SSD512_STEPS,
    build_ssd,
)
from vision_jax.train.config import base_config


def vgg_config(size: int):
    c = base_config("detection")
    c.model.name, c.model.backbone, c.model.width = "ssd", "vgg16", 64
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
    module = L2Norm()
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
    from vision_jax.models.ssd.model import SSDSettings

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


def test_aspect_ratios_must_match_the_number_of_sources():
    config = vgg_config(300)
    config.model.ssd.aspect_ratios = ((2,),) * 5
    with pytest.raises(ValueError, match="aspect_ratios has 5 levels"):
        build_ssd(config, num_classes=20)

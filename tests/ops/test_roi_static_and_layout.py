"""Issue 15, item 9: the RoI ops under jit with traced static arguments give an error that names them and
says to mark them static (not `iteration over a 0-d array`), and an NCHW feature map is caught when the
caller states the channel count."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

import vision_jax.ops as vops
from conftest import sample_boxes


def draw(rng, batch=2, height=None, width=None, channels=None, num_rois=6):
    height, width = height or int(rng.integers(6, 14)), width or int(rng.integers(6, 14))
    channels = channels or int(rng.integers(2, 6))
    features = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
    boxes = sample_boxes(rng, num_rois, image_size=4.0 * max(height, width))
    box_indices = rng.integers(0, batch, num_rois).astype(np.int32)
    return features, boxes, box_indices


def test_jit_of_roi_align_names_the_traced_static_arguments(rng, seed):
    features, boxes, box_indices = draw(rng)
    # What the user did: jit the op as it is, every argument traced.
    with pytest.raises(TypeError) as error:
        jax.jit(vops.roi_align)(features, boxes, box_indices, 3, 0.25, 2, True)
    message = str(error.value)
    assert message.startswith("roi_align: output_size, sampling_ratio, aligned are traced under jit but must be static"), message
    assert "jax.jit(roi_align, static_argnames=('output_size', 'sampling_ratio', 'aligned'))" in message
    # Doing what it says works, and spatial_scale may stay traced.
    static = jax.jit(vops.roi_align, static_argnames=("output_size", "sampling_ratio", "aligned"))
    np.testing.assert_allclose(static(features, boxes, box_indices, 3, 0.25, 2, True),
                               vops.roi_align(features, boxes, box_indices, 3, 0.25, 2, True), rtol=1e-5, atol=1e-6,
                               err_msg=f"seed={seed}")


@pytest.mark.parametrize("argument, value", [("output_size", (2, 3)), ("sampling_ratio", 0), ("aligned", False),
                                             ("max_sampling_ratio", 4), ("channels", None)])
def test_roi_align_names_each_traced_static_argument(argument, value, rng):
    features, boxes, box_indices = draw(rng)
    kwargs = {"output_size": 2, "sampling_ratio": 0, "aligned": True, "max_sampling_ratio": 3,
              "channels": features.shape[3], argument: value if value is not None else features.shape[3]}
    static = {k: v for k, v in kwargs.items() if k != argument}
    with pytest.raises(TypeError, match=f"^roi_align: {argument} is traced under jit but must be static"):
        jax.jit(functools.partial(vops.roi_align, **static))(features, boxes, box_indices, **{argument: kwargs[argument]})


def test_jit_of_roi_pool_and_multilevel_roi_align_names_the_traced_static_arguments(rng):
    features, boxes, box_indices = draw(rng, height=12, width=12)
    with pytest.raises(TypeError, match=r"^roi_pool: output_size is traced under jit but must be static .*"
                                        r"static_argnames=\('output_size',\)"):
        jax.jit(vops.roi_pool)(features, boxes, box_indices, 2, 0.5)
    pyramid = {2: features, 3: features[:, ::2, ::2]}
    levels = rng.integers(2, 4, len(boxes)).astype(np.int32)
    with pytest.raises(TypeError, match="^multilevel_roi_align: output_size, sampling_ratio, aligned are traced"):
        jax.jit(vops.multilevel_roi_align)(pyramid, boxes, box_indices, levels, 2, 2, True)
    static = jax.jit(vops.multilevel_roi_align, static_argnames=("output_size", "sampling_ratio", "aligned"))
    np.testing.assert_allclose(static(pyramid, boxes, box_indices, levels, 2, 2, True),
                               vops.multilevel_roi_align(pyramid, boxes, box_indices, levels, 2, 2, True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_nchw_features_are_caught_when_the_channel_count_is_given(op, rng, seed):
    channels = int(rng.integers(3, 9))
    width = channels + int(rng.integers(1, 8))
    features, boxes, box_indices = draw(rng, height=int(rng.integers(10, 16)), width=width, channels=channels)
    call = functools.partial(getattr(vops, op), boxes=boxes, box_indices=box_indices, output_size=2, spatial_scale=0.25)
    nchw = features.transpose(0, 3, 1, 2)
    # Without `channels` the NCHW map is read as NHWC: no error, and the width comes out as channels.
    assert call(nchw).shape == (len(boxes), 2, 2, width), f"seed={seed}"
    with pytest.raises(ValueError) as error:
        call(nchw, channels=channels)
    assert str(error.value) == (
        f"features has shape {nchw.shape}, whose last axis ({nchw.shape[3]}) is not the channels={channels} given: "
        f"features must be NHWC [B, H, W, C]; it looks NCHW (axis 1 has {channels} entries): pass "
        "features.transpose(0, 2, 3, 1)"
    ), f"seed={seed}"
    # The stated count accepts the NHWC map and changes nothing; a wrong count is refused without the NCHW hint.
    np.testing.assert_array_equal(call(features, channels=channels), call(features))
    with pytest.raises(ValueError, match=rf"last axis \({channels}\) is not the channels={channels + 1} given: "
                                         r"features must be NHWC \[B, H, W, C\]$"):
        call(features, channels=channels + 1)
    # Under jit, with channels static.
    jitted = jax.jit(lambda f: call(f, channels=channels))
    with pytest.raises(ValueError, match="it looks NCHW"):
        jitted(nchw)


def test_multilevel_roi_align_catches_an_nchw_level(rng, seed):
    channels = int(rng.integers(3, 9))
    features, boxes, box_indices = draw(rng, height=16, width=16, channels=channels)
    pyramid = {2: features, 3: features[:, ::2, ::2]}
    levels = rng.integers(2, 4, len(boxes)).astype(np.int32)
    nchw = {key: fmap.transpose(0, 3, 1, 2) for key, fmap in pyramid.items()}
    with pytest.raises(ValueError, match=rf"^level 2 has shape \(2, {channels}, 16, 16\), .* it looks NCHW"):
        vops.multilevel_roi_align(nchw, boxes, box_indices, levels, 2, channels=channels)
    # Without channels, NCHW levels of different sizes still fail, and the message now says NHWC.
    with pytest.raises(ValueError, match=r"differs from .* in batch or channels \(the last axis: maps must be NHWC"):
        vops.multilevel_roi_align(nchw, boxes, box_indices, levels, 2)
    np.testing.assert_array_equal(vops.multilevel_roi_align(pyramid, boxes, box_indices, levels, 2, channels=channels),
                                  vops.multilevel_roi_align(pyramid, boxes, box_indices, levels, 2), err_msg=f"seed={seed}")

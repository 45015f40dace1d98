"""The conv autoencoder's shapes and range, and the exact copy of its encoder into FCN / SegNet."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones import VGG16, ResNet
from vision_jax.models.segmentation.autoencoder import ConvAutoencoder, copy_encoder_params
from vision_jax.models.segmentation.fcn import FCN
from vision_jax.models.segmentation.segnet import SegNet
from vision_jax.models.segmentation.settings import AutoencoderSettings, FCNSettings


def numpy_variables(model, shape, rng):
    """Variables of `model` with every leaf drawn from U(0.5, 2) (positive, so BatchNorm variances are
    valid; random, so a copy cannot match by chance)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return jax.tree.map(lambda leaf: rng.uniform(0.5, 2.0, size=leaf.shape).astype(np.float32), dict(shapes))


def test_cae_reconstructs_any_size_in_the_unit_range(seed):
    rng = np.random.default_rng(seed)
    model = ConvAutoencoder(
        backbone=ResNet(stage_sizes=(1, 1, 1), block="basic", width=4),
        settings=AutoencoderSettings(code_feature="C4", code_stride=16, decoder_min_features=4),
    )
    images = rng.normal(size=(2, 37, 21, 3)).astype(np.float32)
    variables = numpy_variables(model, (1, 37, 21, 3), rng)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert out.shape == images.shape and out.dtype == jnp.float32
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1)), f"seed={seed}"
    with pytest.raises(ValueError, match="has stride 16, but config.model.segmentation.code_stride=8"):
        jax.eval_shape(
            lambda: model.clone(settings=dataclasses.replace(model.settings, code_stride=8)).init(
                jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
            )
        )


@pytest.mark.parametrize("target", ["fcn", "segnet"])
def test_encoder_copies_exactly_into_a_segmenter(target, seed):
    rng = np.random.default_rng(seed)
    shape = (1, 64, 64, 3)
    if target == "fcn":
        backbone = ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=4)
        segmenter, key = FCN(backbone=backbone, num_classes=3, settings=FCNSettings(head_features=0)), "backbone"
    else:
        backbone = VGG16(width=2, batch_norm=True)
        segmenter, key = SegNet(num_classes=3, width=2), "encoder"
    cae = ConvAutoencoder(
        backbone=backbone, settings=AutoencoderSettings(code_feature="C4", code_stride=16, decoder_min_features=4)
    )
    cae_vars, seg_vars = numpy_variables(cae, shape, rng), numpy_variables(segmenter, shape, rng)
    copied = copy_encoder_params(cae_vars, seg_vars, target_key=key)
    for collection in ("params", "batch_stats"):
        source, result = cae_vars[collection]["backbone"], copied[collection][key]
        paths = jax.tree_util.tree_leaves_with_path(source)
        assert len(paths) == len(jax.tree.leaves(result)) > 0
        for (path, a), b in zip(paths, jax.tree.leaves(result)):
            np.testing.assert_array_equal(a, b, err_msg=f"{collection}{jax.tree_util.keystr(path)}")
        for name in seg_vars[collection]:  # the rest of the segmenter is untouched
            if name != key:
                jax.tree.map(np.testing.assert_array_equal, copied[collection][name], seg_vars[collection][name])
    # The copied variables run in the segmenter.
    logits = jax.jit(lambda v: segmenter.apply(v, jnp.zeros(shape), train=False))(copied)
    assert logits.shape == shape[:3] + (3,)


def test_mismatched_encoders_are_refused_with_the_differing_paths(seed):
    rng = np.random.default_rng(seed)
    shape = (1, 32, 32, 3)
    cae = ConvAutoencoder(
        backbone=ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=4),
        settings=AutoencoderSettings(code_feature="C4", code_stride=16),
    )
    fcn = FCN(
        backbone=ResNet(stage_sizes=(1, 1, 1, 1), block="basic", width=8),
        num_classes=2,
        settings=FCNSettings(head_features=0),
    )
    with pytest.raises(ValueError, match=r"shape mismatches \[.*conv1.*\(7, 7, 3, 4\) vs \(7, 7, 3, 8\)"):
        copy_encoder_params(numpy_variables(cae, shape, rng), numpy_variables(fcn, shape, rng))
    with pytest.raises(ValueError, match="has no 'encoder'"):
        copy_encoder_params(numpy_variables(cae, shape, rng), numpy_variables(fcn, shape, rng), target_key="encoder")

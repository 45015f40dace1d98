"""Darknet-53: stage shapes and strides, and its size against the paper's table 1 (layer by layer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones.darknet import Darknet, darknet53


def paper_table_parameters(width: int = 32) -> tuple[int, int]:
    """(conv weights, BatchNorm scale + bias) of Darknet-53 without its classifier, from table 1 of
    Redmon & Farhadi (2018): a 3x3 conv of `width` filters, then per stage a 3x3/2 conv doubling the
    filters and [1x1 half, 3x3 full] residual pairs repeated 1, 2, 8, 8, 4 times."""
    weights, norms, channels = 3 * 3 * 3 * width, width, width
    for repeats in (1, 2, 8, 8, 4):
        weights += 3 * 3 * channels * 2 * channels
        norms += 2 * channels
        channels *= 2
        weights += repeats * (channels * channels // 2 + 3 * 3 * channels // 2 * channels)
        norms += repeats * (channels // 2 + channels)
    return weights, 2 * norms


def test_darknet53_stage_shapes_strides_and_size_follow_the_paper():
    model = darknet53()
    images = jax.ShapeDtypeStruct((2, 256, 320, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False), images)
    features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    for level in range(1, 6):
        stride = 2**level
        assert features[f"C{level}"].shape == (2, 256 // stride, 320 // stride, 32 * stride), (
            level,
            features[f"C{level}"].shape,
        )
    kernels = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]) if path[-1].key == "kernel"
    ]
    assert len(kernels) == 52, f"Darknet-53 has 52 convolutions (+ the classifier's FC = 53), got {len(kernels)}"
    conv_weights = sum(int(np.prod(k.shape)) for k in kernels)
    norm_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"])) - conv_weights
    assert (conv_weights, norm_params) == paper_table_parameters()
    # ~40.6M parameters without the 1000-way classifier (41.6M with it, the paper's figure).
    assert conv_weights + norm_params == pytest.approx(40.6e6, rel=0.01)


def test_darknet_residual_block_is_identity_plus_two_conv_bn_leaky_layers(rng, seed):
    """One tiny stage checked against a float64 NumPy forward pass (inference-mode BatchNorm)."""
    model = Darknet(stage_sizes=(1,), width=2)
    x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
    variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0, impl="rbg"))
    variables = jax.tree.map(lambda v: v + rng.uniform(0.5, 1.5, v.shape).astype(np.float32) * 0.1, variables)
    got = np.asarray(jax.jit(lambda v: model.apply(v, x, train=False)["C1"])(variables))

    def conv_bn_leaky(x, params, stats, stride):
        kernel = np.asarray(params["conv"]["kernel"], np.float64)
        k = kernel.shape[0]
        pad = k // 2
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        out_h = (x.shape[1] + 2 * pad - k) // stride + 1
        out_w = (x.shape[2] + 2 * pad - k) // stride + 1
        y = np.zeros((1, out_h, out_w, kernel.shape[-1]))
        for i in range(out_h):
            for j in range(out_w):
                patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
                y[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
        bn, st = params["bn"], stats["bn"]
        y = (y - np.asarray(st["mean"])) / np.sqrt(np.asarray(st["var"], np.float64) + 1e-5) * np.asarray(
            bn["scale"]
        ) + np.asarray(bn["bias"])
        return np.where(y > 0, y, 0.1 * y)

    p, s = variables["params"], variables["batch_stats"]
    y = conv_bn_leaky(x.astype(np.float64), p["stem"], s["stem"], 1)
    y = conv_bn_leaky(y, p["down1"], s["down1"], 2)
    block_p, block_s = p["stage1_block0"], s["stage1_block0"]
    want = y + conv_bn_leaky(
        conv_bn_leaky(y, block_p["conv1"], block_s["conv1"], 1), block_p["conv2"], block_s["conv2"], 1
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")

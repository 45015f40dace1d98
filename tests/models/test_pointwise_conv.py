"""PointwiseConv is flax.linen.Conv(features, (1, 1), strides, 'VALID', use_bias=False) as a matrix
product: same variables, same outputs and gradients (up to float32 summation order), same dtypes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones.pointwise import PointwiseConv
from vision_jax.models.backbones.resnet import conv_kernel_init


def _pair(features, strides, dtype=None):
    conv = nn.Conv(features, (1, 1), strides, padding="VALID", use_bias=False, dtype=dtype, kernel_init=conv_kernel_init)
    return conv, PointwiseConv(features, strides, dtype=dtype, kernel_init=conv_kernel_init)


@pytest.mark.parametrize("strides,side", [(1, 6), (2, 6), (2, 7), (3, 5)])
def test_outputs_and_gradients_equal_flax_conv(strides, side, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, side, side, 5)), jnp.float32)
    conv, pointwise = _pair(7, strides)
    key = jax.random.key(seed)
    variables = conv.init(key, x)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, pointwise.init(key, x))
    np.testing.assert_array_equal(variables["params"]["kernel"], pointwise.init(key, x)["params"]["kernel"])

    def loss(module, variables, x, weights):
        return jnp.sum(module.apply(variables, x) * weights)

    expected = conv.apply(variables, x)
    got = pointwise.apply(variables, x)
    assert got.shape == expected.shape == (2, -(-side // strides), -(-side // strides), 7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"seed={seed}")
    weights = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    grads_expected = jax.grad(lambda v, x: loss(conv, v, x, weights), argnums=(0, 1))(variables, x)
    grads_got = jax.grad(lambda v, x: loss(pointwise, v, x, weights), argnums=(0, 1))(variables, x)
    for e, g in zip(jax.tree.leaves(grads_expected), jax.tree.leaves(grads_got)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=f"seed={seed}")


def test_compute_dtype_follows_flax_conv(seed):
    """bfloat16 compute with float32 parameters, as config.model.dtype='bfloat16' asks."""
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(1, 4, 4, 3)), jnp.float32)
    conv, pointwise = _pair(4, 1, dtype=jnp.bfloat16)
    variables = conv.init(jax.random.key(seed), x)
    expected, got = conv.apply(variables, x), pointwise.apply(variables, x)
    assert got.dtype == expected.dtype == jnp.bfloat16
    assert variables["params"]["kernel"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(expected, np.float32), rtol=2e-2, atol=2e-2)

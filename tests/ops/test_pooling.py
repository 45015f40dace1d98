"""Max pooling with argmax against TensorFlow, plain max pooling against Flax, and unpooling against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from vision_jax.ops.pooling import bed_of_nails_unpool, max_pool, max_pool_with_argmax, max_unpool, nearest_unpool

jit_pool = jax.jit(max_pool_with_argmax, static_argnums=(1, 2, 3))
jit_unpool = jax.jit(max_unpool, static_argnums=(2,))


def fresh_rng():
    seed = int(np.random.SeedSequence().entropy % (2**63))
    return seed, np.random.default_rng(seed)


def random_pool_config(rng):
    window = tuple(int(v) for v in rng.integers(1, 4, 2))
    strides = tuple(int(v) for v in rng.integers(1, 4, 2))
    padding = str(rng.choice(["VALID", "SAME"]))
    shape = (int(rng.integers(1, 3)), int(rng.integers(3, 13)), int(rng.integers(3, 13)), int(rng.integers(1, 5)))
    return shape, window, strides, padding


def test_max_pool_with_argmax_matches_tensorflow_including_ties():
    seed, rng = fresh_rng()
    compared = 0
    for trial in range(8):
        shape, window, strides, padding = random_pool_config(rng)
        # Small integers make many equal maxima: both must pick the first in the window.
        x = (rng.integers(-3, 4, shape) if trial % 2 else rng.standard_normal(shape)).astype(np.float32)
        tf_pooled, tf_argmax = tf.nn.max_pool_with_argmax(
            x, (1, *window, 1), (1, *strides, 1), padding, include_batch_in_index=False
        )
        pooled, argmax = jit_pool(x, window, strides, padding)
        context = f"seed={seed} shape={shape} window={window} strides={strides} {padding}"
        np.testing.assert_array_equal(pooled, tf_pooled.numpy(), err_msg=context)
        np.testing.assert_array_equal(argmax, tf_argmax.numpy(), err_msg=context)
        assert argmax.dtype == jnp.int32
        compared += pooled.size
    assert compared >= 100, f"seed={seed}: only {compared} pooled values compared"


def test_max_pool_gradient_goes_to_the_argmax():
    seed, rng = fresh_rng()
    x = rng.integers(-2, 3, (2, 9, 8, 3)).astype(np.float32)
    pooled, argmax = jit_pool(x, 3, 2, "SAME")
    upstream = rng.standard_normal(pooled.shape).astype(np.float32)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(max_pool_with_argmax(v, 3, 2, "SAME")[0] * upstream)))(x)
    ref = np.zeros(x.shape)
    for b in range(2):
        np.add.at(ref.reshape(2, -1)[b], np.asarray(argmax[b]).ravel(), upstream[b].ravel())
    np.testing.assert_allclose(grad, ref, atol=1e-6, err_msg=f"seed={seed}")


def test_max_unpool_puts_maxima_back_and_zeros_elsewhere():
    """unpool(pool(x)) keeps x exactly at the pooled argmax positions and is 0 elsewhere."""
    seed, rng = fresh_rng()
    for _ in range(3):
        shape, window, strides, padding = random_pool_config(rng)
        x = rng.standard_normal(shape).astype(np.float32)
        pooled, argmax = jit_pool(x, window, strides, padding)
        restored = np.asarray(jit_unpool(pooled, argmax, shape[1:3]))
        ref = np.zeros((shape[0], np.prod(shape[1:])), np.float32)
        for b in range(shape[0]):
            ref[b, np.asarray(argmax[b]).ravel()] = np.asarray(pooled[b]).ravel()
        ref = ref.reshape(shape)
        context = f"seed={seed} shape={shape} window={window} strides={strides} {padding}"
        np.testing.assert_array_equal(restored, ref, err_msg=context)
        kept = ref != 0
        np.testing.assert_array_equal(restored[kept], x[kept], err_msg=context)


def test_max_unpool_segnet_2x2_gradient_and_full_shape():
    seed, rng = fresh_rng()
    x = rng.standard_normal((2, 8, 6, 3)).astype(np.float32)
    pooled, argmax = jit_pool(x, 2, 2, "VALID")
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(max_unpool(p, argmax, x.shape) * upstream)))(pooled)
    ref = np.take_along_axis(upstream.reshape(2, -1), np.asarray(argmax).reshape(2, -1), axis=1)
    np.testing.assert_allclose(grad, ref.reshape(pooled.shape), atol=1e-6, err_msg=f"seed={seed}")
    with pytest.raises(ValueError, match="output_shape"):
        max_unpool(pooled, argmax, (3, 8, 6, 3))


def test_nearest_and_bed_of_nails_unpool_match_numpy():
    seed, rng = fresh_rng()
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    for factor in (2, (3, 2), (1, 4)):
        fy, fx = (factor, factor) if isinstance(factor, int) else factor
        nearest = np.repeat(np.repeat(x, fy, axis=1), fx, axis=2)
        np.testing.assert_array_equal(nearest_unpool(x, factor), nearest, err_msg=f"seed={seed}")
        nails = np.zeros((2, 5 * fy, 4 * fx, 3), np.float32)
        nails[:, ::fy, ::fx] = x
        np.testing.assert_array_equal(bed_of_nails_unpool(x, factor), nails, err_msg=f"seed={seed}")


def test_pooling_ops_compile_once_and_vmap_like_a_loop():
    seed, rng = fresh_rng()
    traces = []

    def pool_unpool(x):
        traces.append(None)
        pooled, argmax = max_pool_with_argmax(x, 2, 2, "SAME")
        return max_unpool(pooled, argmax, x.shape[1:3]), nearest_unpool(pooled, 2), bed_of_nails_unpool(pooled, 2)

    jitted = jax.jit(pool_unpool)
    x = rng.standard_normal((3, 2, 7, 6, 3)).astype(np.float32)
    loop = [jitted(x[i]) for i in range(3)]
    assert len(traces) == 1, f"seed={seed}"
    batched = jax.jit(jax.vmap(pool_unpool))(x)
    for got, want in zip(batched, zip(*loop)):
        np.testing.assert_array_equal(got, np.stack(want), err_msg=f"seed={seed}")


def test_pooling_rejects_bad_arguments():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="padding"):
        max_pool_with_argmax(x, 2, 2, "same")
    with pytest.raises(ValueError, match="window"):
        max_pool_with_argmax(x, 0, 2)
    with pytest.raises(ValueError, match="x must be"):
        nearest_unpool(x[0], 2)
    with pytest.raises(ValueError, match="VALID"):
        max_pool_with_argmax(x, 5, 1)


@pytest.mark.parametrize(
    "window,strides,padding,side",
    [(3, 2, ((1, 1), (1, 1)), 12), (3, 2, ((1, 1), (1, 1)), 11), (2, 2, ((0, 0), (0, 0)), 8), ((3, 2), (1, 2), ((0, 1), (1, 0)), 7)],
)
def test_max_pool_equals_flax_max_pool_values_and_gradient_with_ties(window, strides, padding, side, rng):
    """The reference is flax.linen.max_pool (lax.reduce_window; gradient by XLA's select-and-scatter): equal
    values and gradients, bit for bit, on inputs with many ties (small integers, and ReLU's zeros)."""
    import flax.linen as nn  # the reference only: ops import no Flax

    x = jnp.asarray(np.maximum(rng.integers(-3, 4, (2, side, side, 3)), 0), jnp.float32)
    pair = lambda v: (v, v) if isinstance(v, int) else v
    reference = lambda x: nn.max_pool(x, pair(window), pair(strides), padding)
    ours = lambda x: max_pool(x, window, strides, padding)
    np.testing.assert_array_equal(ours(x), reference(x))
    weights = jnp.asarray(rng.normal(size=reference(x).shape), jnp.float32)
    grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)
    np.testing.assert_array_equal(grad(ours), grad(reference))

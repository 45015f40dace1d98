"""Random weights for reference tests.

Variable shapes come from `jax.eval_shape(model.init, ...)` (no FLOPs, no compilation of the
PRNG, which on this 2-core machine costs tens of seconds for a whole network); values are drawn
with NumPy: conv kernels ~ N(0, 2/fan_out) (He), dense kernels ~ N(0, 1/fan_in), BatchNorm scale
in [0.5, 1.5], biases ~ N(0, 0.2), running means ~ N(0, 0.3), running variances in [0.5, 2].
Every BN statistic, affine and bias is random, so inference-mode BN and biases are exercised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, images: np.ndarray, rng: np.random.Generator, **init_kwargs) -> dict:
    """{'params': ..., 'batch_stats': ...} for `model` on `images`, as float32 NumPy arrays."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(images), train=False, **init_kwargs))

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "bias":
            value = rng.normal(0.0, 0.2, shape)
        elif name == "mean":
            value = rng.normal(0.0, 0.3, shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, shape)
        elif name == "kernel" and len(shape) == 4:
            value = rng.normal(0.0, np.sqrt(2.0 / (shape[0] * shape[1] * shape[3])), shape)
        elif name == "kernel" and len(shape) == 2:
            value = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
        else:
            raise AssertionError(f"no rule to randomise variable {jax.tree_util.keystr(path)}")
        return np.asarray(value, np.float32)

    return jax.tree_util.tree_map_with_path(draw, dict(shapes))


def max_relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (a scale-free error for whole feature maps)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12))

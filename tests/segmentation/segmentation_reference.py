"""Float64 NumPy building blocks for the segmentation reference tests, and random variables.

Written from the definitions (cross-correlation conv, scatter transposed conv, inference BatchNorm,
half-pixel linear interpolation), independently of the code under test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def conv2d_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Cross-correlation of x [B, H, W, C] with kernel [kh, kw, C, O], zero padding (k-1)//2 before and
    k//2 after (TF/Flax 'SAME' for stride 1), + bias."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("bhwc,co->bhwo", padded[:, a : a + height, b : b + width], kernel[a, b])
    return out if bias is None else out + bias


def batch_norm(x: np.ndarray, params: dict, stats: dict, epsilon: float = 1e-5) -> np.ndarray:
    return (x - stats["mean"]) / np.sqrt(stats["var"] + epsilon) * params["scale"] + params["bias"]


def transposed_conv(x: np.ndarray, kernel: np.ndarray, factor: int) -> np.ndarray:
    """Scatter x [B, h, w, C] * kernel [k, k, C, O] to out[i f + a, j f + b] (Caffe/torch), then keep
    the h f x w f outputs from offset f // 2 (FCN's crop)."""
    size = kernel.shape[0]
    batch, height, width, _ = x.shape
    full = np.zeros((batch, (height - 1) * factor + size, (width - 1) * factor + size, kernel.shape[3]))
    for i in range(height):
        for j in range(width):
            full[:, i * factor : i * factor + size, j * factor : j * factor + size] += np.einsum(
                "nc,abco->nabo", x[:, i, j], kernel
            )
    crop = factor // 2
    return full[:, crop : crop + height * factor, crop : crop + width * factor]


def interp_taps(factor: int) -> np.ndarray:
    """The 1-D filter of half-pixel linear interpolation: np.interp's response to a unit impulse."""
    n = 9
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    response = np.interp((np.arange(n * factor) + 0.5) / factor, np.arange(n) + 0.5, impulse)
    size = 2 * factor - factor % 2
    start = (n // 2) * factor - factor // 2
    return response[start : start + size]


def fixed_bilinear_upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """FCN's fixed upsampling of x [B, h, w, C]: per channel, the scatter of interp_taps^2."""
    taps = interp_taps(factor)
    channels = x.shape[-1]
    kernel = np.zeros((taps.size, taps.size, channels, channels))
    kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[:, :, None]
    return transposed_conv(x, kernel, factor)


def max_pool_argmax_2x2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2/2 max-pool of x [B, H, W, C] (H, W even) and the (row, col) of each maximum, first in
    row-major window order on ties. Returns (pooled [B, H/2, W/2, C], positions [B, H/2, W/2, C, 2])."""
    batch, height, width, channels = x.shape
    windows = x.reshape(batch, height // 2, 2, width // 2, 2, channels).transpose(0, 1, 3, 5, 2, 4)
    flat = windows.reshape(batch, height // 2, width // 2, channels, 4)
    best = flat.argmax(-1)
    rows = 2 * np.arange(height // 2)[None, :, None, None] + best // 2
    cols = 2 * np.arange(width // 2)[None, None, :, None] + best % 2
    return flat.max(-1), np.stack([rows, cols], -1)


def unpool(pooled: np.ndarray, positions: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    batch, height, width, channels = pooled.shape
    out = np.zeros((batch, size[0], size[1], channels))
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    r, col = positions[b, i, j, c]
                    out[b, r, col, c] = pooled[b, i, j, c]
    return out


def random_variables(model, inputs: np.ndarray, rng: np.random.Generator, **kwargs) -> dict:
    """Every variable of `model` (shapes from jax.eval_shape) drawn with NumPy: kernels He-scaled
    normal, biases N(0, 0.2), BN scale U(0.5, 1.5), running mean N(0, 0.3), running var U(0.5, 2)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(inputs), train=False, **kwargs))

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name == "bias":
            value = rng.normal(0.0, 0.2, shape)
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "mean":
            value = rng.normal(0.0, 0.3, shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise AssertionError(f"no rule for {jax.tree_util.keystr(path)}")
        return np.asarray(value, np.float32)

    return jax.tree_util.tree_map_with_path(draw, dict(shapes))


def to_float64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)

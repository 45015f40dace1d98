"""FCN's bilinear transposed convolution against NumPy half-pixel linear interpolation (np.interp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.segmentation.bilinear_upsampling import (
    BilinearConvTranspose,
    bilinear_kernel,
    bilinear_kernel_size,
)

FACTORS = (2, 3, 8, 32)


def interp_upsample_1d(signal: np.ndarray, factor: int) -> np.ndarray:
    """Half-pixel-centre linear interpolation of a 1-D signal by an integer factor (np.interp clamps
    outside the first/last centre; callers compare only the interior)."""
    n = signal.size
    out_centres = (np.arange(n * factor) + 0.5) / factor  # in input pixel units
    return np.interp(out_centres, np.arange(n) + 0.5, signal)


def interior(n: int, factor: int) -> np.ndarray:
    """Output indices whose centre lies between the first and last input centre."""
    position = (np.arange(n * factor) + 0.5) / factor - 0.5
    return (position >= 0) & (position <= n - 1)


@pytest.mark.parametrize("factor", FACTORS)
def test_kernel_is_the_impulse_response_of_linear_interpolation(factor):
    n = 7
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    response = interp_upsample_1d(impulse, factor)  # taps of the filter, centred on input pixel n//2
    # The scatter of input pixel i covers outputs i*f - f//2 .. i*f - f//2 + k - 1.
    size = bilinear_kernel_size(factor)
    start = (n // 2) * factor - factor // 2
    taps = np.zeros(size)
    inside = slice(max(start, 0), min(start + size, n * factor))
    taps[inside.start - start : inside.stop - start] = response[inside]
    channels = 3
    kernel = bilinear_kernel(factor, channels, np.float64)
    assert kernel.shape == (size, size, channels, channels)
    for c in range(channels):
        np.testing.assert_allclose(kernel[:, :, c, c], np.outer(taps, taps), atol=1e-12, err_msg=f"factor {factor}")
    off_diagonal = kernel.copy()
    off_diagonal[:, :, np.arange(channels), np.arange(channels)] = 0
    assert not off_diagonal.any(), "a channel leaks into another"


@pytest.mark.parametrize("factor", FACTORS)
def test_fixed_upsampling_reproduces_a_ramp_exactly_in_the_interior(factor, seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(2, 7, size=2)
    slope_y, slope_x, offset = rng.uniform(-3, 3, size=3)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = (offset + slope_y * rows + slope_x * cols)[None, :, :, None]
    out = BilinearConvTranspose(factor, trainable=False).apply({}, jnp.asarray(ramp, jnp.float32))
    assert out.shape == (1, height * factor, width * factor, 1)
    y = (np.arange(height * factor) + 0.5) / factor - 0.5  # output centres in input pixel coordinates
    x = (np.arange(width * factor) + 0.5) / factor - 0.5
    expected = offset + slope_y * y[:, None] + slope_x * x[None, :]
    keep = np.ix_(interior(height, factor), interior(width, factor))
    np.testing.assert_allclose(
        np.asarray(out)[0, :, :, 0][keep], expected[keep], atol=2e-5, rtol=1e-6, err_msg=f"seed={seed} factor={factor}"
    )


@pytest.mark.parametrize("factor", (2, 3))
def test_interior_equals_separable_linear_interpolation_of_random_maps(factor, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, 6, 4))
    model = BilinearConvTranspose(factor, trainable=True)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x, jnp.float32))
    out = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x, jnp.float32)))
    rows = np.apply_along_axis(interp_upsample_1d, 1, x, factor)
    expected = np.apply_along_axis(interp_upsample_1d, 2, rows, factor)
    keep = np.ix_(range(2), np.flatnonzero(interior(5, factor)), np.flatnonzero(interior(6, factor)), range(4))
    np.testing.assert_allclose(out[keep], expected[keep], atol=1e-5, err_msg=f"seed={seed}")


def test_learned_kernel_scatters_as_stored(seed):
    """A random (non-symmetric) kernel: out[i f + a - f//2, ...] += x[i, ...] K[a, ...] (Caffe/torch)."""
    rng = np.random.default_rng(seed)
    factor, size = 2, bilinear_kernel_size(2)
    x = rng.normal(size=(1, 3, 4, 2))
    kernel = rng.normal(size=(size, size, 2, 2))
    out = BilinearConvTranspose(factor).apply(
        {"params": {"kernel": jnp.asarray(kernel, jnp.float32)}}, jnp.asarray(x, jnp.float32)
    )
    full = np.zeros((1, 2 * factor + size, 3 * factor + size, 2))
    for i in range(3):
        for j in range(4):
            full[0, i * factor : i * factor + size, j * factor : j * factor + size] += np.einsum(
                "c,abco->abo", x[0, i, j], kernel
            )
    crop = factor // 2
    np.testing.assert_allclose(
        np.asarray(out), full[:, crop : crop + 3 * factor, crop : crop + 4 * factor], atol=1e-5, err_msg=f"seed={seed}"
    )


def test_fixed_upsampling_has_no_parameters_and_learned_starts_bilinear():
    x = jnp.zeros((1, 2, 2, 5))
    assert BilinearConvTranspose(4, trainable=False).init(jax.random.key(0), x) == {}
    params = BilinearConvTranspose(4).init(jax.random.key(0), x)["params"]
    np.testing.assert_array_equal(params["kernel"], bilinear_kernel(4, 5))
    with pytest.raises(ValueError, match="positive integer"):
        bilinear_kernel(0, 1)

"""FPN against a float64 NumPy implementation of the paper's top-down pathway (detectron2 layout)."""

import jax
import numpy as np
import pytest

from vision_jax.models.backbones.fpn import FPN


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Stride-1 convolution with zero padding k // 2: x [B, H, W, C], kernel [k, k, C, O]."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]] @ kernel[dy, dx]
    return out + bias


def nearest_upsample(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch F.interpolate(size=(height, width), mode='nearest'): source index floor(i * in / out)."""
    out = np.empty((x.shape[0], height, width, x.shape[3]))
    for i in range(height):
        for j in range(width):
            out[:, i, j] = x[:, i * x.shape[1] // height, j * x.shape[2] // width]
    return out


def reference_fpn(features: dict, params: dict) -> dict:
    outputs, inner = {}, None
    for level in (5, 4, 3, 2):
        lateral = conv_same(
            features[f"C{level}"], params[f"lateral{level}"]["kernel"], params[f"lateral{level}"]["bias"]
        )
        if inner is not None:
            lateral = lateral + nearest_upsample(inner, lateral.shape[1], lateral.shape[2])
        inner = lateral
        outputs[f"P{level}"] = conv_same(inner, params[f"output{level}"]["kernel"], params[f"output{level}"]["bias"])
    # torch max_pool2d(kernel_size=1, stride=2, padding=0): output side floor((n - 1) / 2) + 1.
    p5 = outputs["P5"]
    height, width = (p5.shape[1] - 1) // 2 + 1, (p5.shape[2] - 1) // 2 + 1
    p6 = np.empty((p5.shape[0], height, width, p5.shape[3]))
    for i in range(height):
        for j in range(width):
            p6[:, i, j] = p5[:, 2 * i : 2 * i + 1, 2 * j : 2 * j + 1].max(axis=(1, 2))
    outputs["P6"] = p6
    return outputs


@pytest.mark.parametrize("sizes", [(16, 8, 4, 2), (13, 7, 4, 3)], ids=["exact_factor_2", "odd_sizes"])
def test_fpn_matches_numpy_top_down_pathway(sizes, seed):
    rng = np.random.default_rng(seed)
    channels_in = {2: 6, 3: 10, 4: 12, 5: 16}
    features = {
        f"C{level}": rng.normal(size=(2, s, s, channels_in[level])).astype(np.float32)
        for level, s in zip((2, 3, 4, 5), sizes)
    }
    model = FPN(channels=8)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), features))
    params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes["params"])
    out = jax.jit(lambda p, f: model.apply({"params": p}, f))(params, features)
    expected = reference_fpn({k: v.astype(np.float64) for k, v in features.items()}, jax.tree.map(np.float64, params))
    assert list(out) == ["P2", "P3", "P4", "P5", "P6"]
    for name, want in expected.items():
        assert out[name].shape == want.shape, f"seed={seed} {name}: {out[name].shape} vs {want.shape}"
        error = np.max(np.abs(np.asarray(out[name], np.float64) - want)) / np.max(np.abs(want))
        assert error < 1e-5, f"seed={seed} {name}: relative error {error:.2e}"


def test_fpn_refuses_missing_levels_by_name():
    model = FPN(channels=4)
    features = {"C2": np.zeros((1, 8, 8, 3), np.float32), "C3": np.zeros((1, 4, 4, 3), np.float32)}
    with pytest.raises(ValueError, match=r"FPN needs backbone features \['C4', 'C5'\]"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), features))

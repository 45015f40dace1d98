"""vision_jax.ops.anchors against loop-by-loop NumPy re-derivations of torchvision/detectron2/SSD/YOLO."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from vision_jax.ops import anchors as vanchors

TOL = 1e-5


def assert_close(got, ref, seed, what):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape} (seed={seed})"
    # 1e-5 relative to the box's largest coordinate (float32 rounds pixels ~1e3 by ~6e-5).
    bound = TOL * np.maximum(1.0, np.max(np.abs(ref), axis=-1, keepdims=True))
    err = np.abs(got - ref)
    assert np.all(err <= bound), f"{what}: max err {err.max():.3g} (seed={seed})"


def ref_grid_anchors(feature_shape, stride, sizes, ratios, convention, offset=0.0):
    """torchvision AnchorGenerator / detectron2 DefaultAnchorGenerator, written as plain loops."""
    stride_h, stride_w = (stride, stride) if np.isscalar(stride) else stride
    cell = []
    if convention == "torchvision":
        for ratio in ratios:  # ratio-major, then size; corners rounded
            for size in sizes:
                w, h = size / math.sqrt(ratio), size * math.sqrt(ratio)
                cell.append([round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)])
    else:
        for size in sizes:  # size-major, then ratio; area = size^2, r = h / w
            for ratio in ratios:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                cell.append([-w / 2, -h / 2, w / 2, h / 2])
    out = []
    for row in range(feature_shape[0]):
        for col in range(feature_shape[1]):
            sx, sy = (col + offset) * stride_w, (row + offset) * stride_h
            for x1, y1, x2, y2 in cell:
                out.append([x1 + sx, y1 + sy, x2 + sx, y2 + sy])
    return np.asarray(out, np.float64)


def random_config(rng):
    num_sizes, num_ratios = rng.integers(1, 4), rng.integers(1, 4)
    # Sizes/ratios away from exact .5 rounding ties (Python round and float32 agree elsewhere).
    sizes = tuple(float(s) for s in rng.uniform(8, 600, num_sizes))
    ratios = tuple(float(r) for r in np.exp(rng.uniform(np.log(0.2), np.log(5.0), num_ratios)))
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    stride = int(rng.choice([4, 8, 16, 32, 64])) if rng.uniform() < 0.7 else (
        float(rng.uniform(3, 40)), float(rng.uniform(3, 40)))
    return shape, stride, sizes, ratios


@pytest.mark.parametrize("convention", ["torchvision", "detectron2"])
def test_grid_anchors_match_reference_on_random_configs(convention, rng, seed):
    for case in range(120):
        shape, stride, sizes, ratios = random_config(rng)
        offset = 0.0 if case % 2 else 0.5
        got = vanchors.grid_anchors(shape, stride, sizes, ratios, convention, offset)
        assert_close(got, ref_grid_anchors(shape, stride, sizes, ratios, convention, offset), seed,
                     f"case {case} {convention} {shape} {stride} {sizes} {ratios}")


def test_torchvision_default_fpn_cell_anchors_are_the_published_integers():
    # torchvision's rounded cell anchors for size 32, ratios (0.5, 1, 2): w = 32/sqrt(r).
    got = np.asarray(vanchors.cell_anchors((32,), (0.5, 1.0, 2.0)))
    ref = ref_grid_anchors((1, 1), 1, (32,), (0.5, 1.0, 2.0), "torchvision")
    np.testing.assert_array_equal(got, ref)
    assert np.all(got == np.round(got))


def test_multilevel_anchors_concatenate_levels_in_order(rng, seed):
    shapes = [(8, 10), (4, 5), (2, 3), (1, 2), (1, 1)]
    strides = [4, 8, 16, 32, 64]
    sizes = [(32,), (64,), (128,), (256,), (512,)]
    got = vanchors.multilevel_anchors(shapes, strides, sizes, (0.5, 1.0, 2.0))
    ref = np.concatenate([ref_grid_anchors(s, st, sz, (0.5, 1.0, 2.0), "torchvision")
                          for s, st, sz in zip(shapes, strides, sizes)])
    assert_close(got, ref, seed, "FPN anchors")
    ratios_per_level = [tuple(rng.uniform(0.3, 3, 2)) for _ in shapes]
    got = vanchors.multilevel_anchors(shapes, strides, sizes, ratios_per_level, "detectron2")
    ref = np.concatenate([ref_grid_anchors(s, st, sz, r, "detectron2")
                          for s, st, sz, r in zip(shapes, strides, sizes, ratios_per_level)])
    assert_close(got, ref, seed, "per-level ratios")


def test_anchor_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="convention"):
        vanchors.grid_anchors((2, 2), 8, (32,), (1.0,), convention="mmdet")
    with pytest.raises(ValueError, match="one entry per level"):
        vanchors.multilevel_anchors([(2, 2), (1, 1)], [8], [(32,), (64,)])
    with pytest.raises(ValueError, match="positive"):
        vanchors.cell_anchors((32,), (0.0,))
    with pytest.raises(ValueError, match="scales needs"):
        vanchors.ssd_default_boxes([(2, 2)], (64, 64), [[2]], scales=[0.2])


# ----------------------------------------------------------------------------- SSD
def ref_ssd_boxes(feature_shapes, image_size, ratios_per_level, scales, steps, clip):
    """SSD default boxes as in the paper / torchvision DefaultBoxGenerator, as loops (cx,cy,w,h)."""
    out = []
    for k, (fh, fw) in enumerate(feature_shapes):
        pairs = [(scales[k], scales[k]), (math.sqrt(scales[k] * scales[k + 1]),) * 2]
        for r in ratios_per_level[k]:
            pairs += [(scales[k] * math.sqrt(r), scales[k] / math.sqrt(r)),
                      (scales[k] / math.sqrt(r), scales[k] * math.sqrt(r))]
        if clip:
            pairs = [(min(max(w, 0), 1), min(max(h, 0), 1)) for w, h in pairs]
        cells_x = image_size[1] / steps[k] if steps else fw
        cells_y = image_size[0] / steps[k] if steps else fh
        for i in range(fh):
            for j in range(fw):
                for w, h in pairs:
                    out.append([(j + 0.5) / cells_x, (i + 0.5) / cells_y, w, h])
    return np.asarray(out, np.float64)


def test_ssd300_has_8732_default_boxes_matching_the_paper_layout(seed):
    shapes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
    steps = [8, 16, 32, 64, 100, 300]
    got = vanchors.ssd_default_boxes(shapes, (300, 300), ratios, scales=scales, steps=steps,
                                     out_format="cxcywh_normalized")
    assert got.shape == (8732, 4)  # the number the SSD paper reports for SSD300
    assert_close(got, ref_ssd_boxes(shapes, (300, 300), ratios, scales, steps, True), seed, "SSD300")


def test_ssd_default_boxes_random_configs_both_formats(rng, seed):
    for case in range(100):
        num_levels = int(rng.integers(1, 4))
        shapes = [(int(rng.integers(1, 6)), int(rng.integers(1, 6))) for _ in range(num_levels)]
        image_size = (int(rng.integers(64, 400)), int(rng.integers(64, 400)))
        ratios = [list(rng.uniform(1.5, 4, int(rng.integers(0, 3)))) for _ in range(num_levels)]
        clip = bool(rng.uniform() < 0.5)
        steps = [float(rng.uniform(4, 64)) for _ in range(num_levels)] if case % 2 else None
        scales = vanchors.ssd_scales(num_levels, 0.2, 0.95)
        ref = ref_ssd_boxes(shapes, image_size, ratios, scales, steps, clip)
        got = vanchors.ssd_default_boxes(shapes, image_size, ratios, min_ratio=0.2, max_ratio=0.95,
                                         steps=steps, clip=clip, out_format="cxcywh_normalized")
        assert_close(got, ref, seed, f"case {case} normalized")
        height, width = image_size
        ref_xyxy = np.stack([(ref[:, 0] - ref[:, 2] / 2) * width, (ref[:, 1] - ref[:, 3] / 2) * height,
                             (ref[:, 0] + ref[:, 2] / 2) * width, (ref[:, 1] + ref[:, 3] / 2) * height], 1)
        got = vanchors.ssd_default_boxes(shapes, image_size, ratios, min_ratio=0.2, max_ratio=0.95,
                                         steps=steps, clip=clip)
        assert_close(got, ref_xyxy, seed, f"case {case} xyxy")


def test_ssd_scales_follow_the_linear_rule():
    # s_k = s_min + (s_max - s_min)(k - 1)/(m - 1) (paper eq. 4) plus the extra scale 1.
    np.testing.assert_allclose(vanchors.ssd_scales(6, 0.2, 0.9), [0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.0])


# ----------------------------------------------------------------------------- YOLO
def test_yolo_v3_priors_per_level_in_grid_units():
    priors = vanchors.yolo_anchor_priors()
    published = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198),
                 (373, 326)]
    for level, (mask, stride) in enumerate(zip([[6, 7, 8], [3, 4, 5], [0, 1, 2]], [32, 16, 8])):
        ref = np.asarray([published[m] for m in mask], np.float64) / stride
        np.testing.assert_allclose(priors[level], ref, rtol=1e-7)
    pixels = vanchors.yolo_anchor_priors(in_grid_units=False)
    np.testing.assert_array_equal(pixels[2], [[10, 13], [16, 30], [33, 23]])


def test_yolo_grid_offsets_are_column_then_row(rng):
    height, width = int(rng.integers(1, 20)), int(rng.integers(1, 20))
    offsets = np.asarray(vanchors.yolo_grid_offsets((height, width)))
    assert offsets.shape == (height, width, 2)
    for row in range(height):
        for col in range(width):
            assert tuple(offsets[row, col]) == (col, row)


def test_anchors_fold_to_constants_under_jit():
    traces = []

    def shifted_anchors(shift):
        traces.append(1)
        return vanchors.grid_anchors((3, 4), 16, (32, 64)) + shift

    jitted = jax.jit(shifted_anchors)
    for shift in (0.0, 2.5):
        np.testing.assert_allclose(jitted(shift), np.asarray(vanchors.grid_anchors((3, 4), 16, (32, 64))) + shift)
    assert len(traces) == 1

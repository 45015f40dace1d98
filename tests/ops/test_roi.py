"""RoIAlign, RoIPool and multilevel RoIAlign against ONNX Runtime and float64 NumPy references.

The NumPy references follow torchvision's CPU kernels (roi_align_kernel.cpp,
roi_pool_kernel.cpp). RoIAlign's reference is its sparse interpolation matrix A
[K*oh*ow, B*H*W] in float64: the forward pass is A @ features and the gradient w.r.t. the
features is A^T @ upstream.

Tolerance: 1e-5 with features in [0, 1) and maps of at most 32 pixels per side. Sample
coordinates are float32 (as in torchvision's and ONNX Runtime's kernels), so any float32
RoIAlign is off a float64 one by about ulp(coordinate) x (feature change per pixel), and two
float32 implementations (ours and ONNX Runtime's) by up to twice that.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from vision_jax.ops.roi import assign_fpn_levels, multilevel_roi_align, roi_align, roi_pool

TOLERANCE = 1e-5


def fresh_rng():
    seed = int(np.random.SeedSequence().entropy % (2**63))
    return seed, np.random.default_rng(seed)


def random_boxes(rng, num_boxes: int, height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """float32 [K, 4] boxes in input pixels (map pixels / scale): ordinary, partly and wholly
    outside the map, zero-area, inverted, integer-aligned, and larger than the map."""
    span = np.array([width, height, width, height]) / scale
    centre = rng.uniform(-0.2, 1.2, (num_boxes, 2)) * span[:2]
    size = rng.uniform(0.02, 0.8, (num_boxes, 2)) * span[:2]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    kind = rng.integers(0, 8, num_boxes)
    boxes[kind == 0, 2] = boxes[kind == 0, 0]  # zero width
    boxes[kind == 1] = boxes[kind == 1][:, [0, 1, 0, 1]]  # a point
    boxes[kind == 2] = boxes[kind == 2][:, [2, 3, 0, 1]]  # inverted
    boxes[kind == 3] = np.round(boxes[kind == 3] * scale) / scale  # on pixel edges
    boxes[kind == 4] += np.array([2.0, 2.0, 2.0, 2.0]) * span  # wholly outside
    boxes[kind == 5] = np.array([-0.25, -0.25, 1.25, 1.25]) * span  # bigger than the map
    return boxes.astype(np.float32)


def random_case(rng, num_boxes: int = 150, channels: int = 5, scale: float = 1.0):
    batch = int(rng.integers(1, 4))
    height, width = (int(v) for v in rng.integers(1, 33, 2))
    features = rng.uniform(0, 1, (batch, height, width, channels)).astype(np.float32)
    boxes = random_boxes(rng, num_boxes, height, width, scale)
    box_indices = rng.integers(0, batch, num_boxes).astype(np.int32)
    return features, boxes, box_indices


# --------------------------------------------------------------------------- references


def reference_roi_align_terms(
    boxes, box_indices, feature_shape, output_size, spatial_scale, sampling_ratio, aligned, max_sampling_ratio=None
):
    """torchvision's RoIAlign kernel in float64 as a sparse interpolation matrix.

    Returns (rows, cols, weights): output row (k * oh + ph) * ow + pw takes
    weights * features_flat[cols], features_flat being [B*H*W, C]. With sampling_ratio <= 0 the
    per-RoI grid is ceil(roi / out), clipped to max_sampling_ratio when given (vision_jax's
    documented cap).
    """
    _, height, width = feature_shape
    oh, ow = output_size
    offset = 0.5 if aligned else 0.0
    all_rows, all_cols, all_weights = [], [], []

    def axis_terms(coords, size):
        """Per sample: inside [-1, size]?, the two neighbours and their weights."""
        inside = (coords >= -1.0) & (coords <= size)
        coords = np.maximum(coords, 0.0)
        low = np.floor(coords).astype(np.int64)
        at_edge = low >= size - 1
        low = np.where(at_edge, size - 1, low)
        high = np.where(at_edge, size - 1, low + 1)
        frac = np.where(at_edge, 0.0, coords - low)
        return inside, (low, 1.0 - frac), (high, frac)

    for k, (box, image) in enumerate(zip(boxes.astype(np.float64), box_indices)):
        x1, y1, x2, y2 = box * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / oh)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / ow)
        if max_sampling_ratio is not None:
            grid_h, grid_w = min(grid_h, max_sampling_ratio), min(grid_w, max_sampling_ratio)
        if grid_h <= 0 or grid_w <= 0:
            continue
        count = grid_h * grid_w
        bin_h, bin_w = roi_h / oh, roi_w / ow
        ys = y1 + np.arange(oh)[:, None] * bin_h + (np.arange(grid_h) + 0.5) * bin_h / grid_h
        xs = x1 + np.arange(ow)[:, None] * bin_w + (np.arange(grid_w) + 0.5) * bin_w / grid_w
        inside_y, *neighbours_y = axis_terms(ys, height)  # [oh, grid_h]
        inside_x, *neighbours_x = axis_terms(xs, width)  # [ow, grid_w]
        inside = inside_y[:, None, :, None] & inside_x[None, :, None, :]  # [oh, ow, gh, gw]
        rows = (k * oh + np.arange(oh)[:, None, None, None]) * ow + np.arange(ow)[None, :, None, None]
        for y_index, y_weight in neighbours_y:
            for x_index, x_weight in neighbours_x:
                cols = (image * height + y_index[:, None, :, None]) * width + x_index[None, :, None, :]
                weight = y_weight[:, None, :, None] * x_weight[None, :, None, :] / count
                all_rows.append(np.broadcast_to(rows, inside.shape)[inside])
                all_cols.append(cols[inside])
                all_weights.append(weight[inside])
    if not all_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(all_rows), np.concatenate(all_cols), np.concatenate(all_weights)


def samples_near_edges(boxes, feature_shape, output_size, spatial_scale, sampling_ratio, aligned, margin=1e-3):
    """bool [K]: the RoI has a sample within `margin` of -1 or of H / W.

    RoIAlign is discontinuous there (a sample at -1 reads pixel 0, one just below reads 0), so
    float32 and float64 rounding may legitimately pick different sides. Random tests skip such
    RoIs; `test_roi_align_exact_on_the_validity_edges` covers the edges with exact arithmetic.
    """
    _, height, width = feature_shape
    near = np.zeros(len(boxes), bool)
    offset = 0.5 if aligned else 0.0
    for k, box in enumerate(boxes.astype(np.float64)):
        x1, y1, x2, y2 = box * spatial_scale - offset
        for start, extent, bins, size in ((y1, y2 - y1, output_size[0], height), (x1, x2 - x1, output_size[1], width)):
            if not aligned:
                extent = max(extent, 1.0)
            grid = sampling_ratio if sampling_ratio > 0 else max(math.ceil(extent / bins), 1)
            coords = (
                start + np.arange(bins)[:, None] * (extent / bins) + (np.arange(grid) + 0.5) * (extent / bins) / grid
            )
            near[k] |= bool(np.any((np.abs(coords + 1) < margin) | (np.abs(coords - size) < margin)))
    return near


def reference_roi_align(
    features, boxes, box_indices, output_size, spatial_scale, sampling_ratio, aligned, max_sampling_ratio=None
) -> np.ndarray:
    batch, height, width, channels = features.shape
    rows, cols, weights = reference_roi_align_terms(
        boxes,
        box_indices,
        (batch, height, width),
        output_size,
        spatial_scale,
        sampling_ratio,
        aligned,
        max_sampling_ratio,
    )
    out = np.zeros((len(boxes) * output_size[0] * output_size[1], channels))
    np.add.at(out, rows, weights[:, None] * features.reshape(-1, channels)[cols])
    return out.reshape(len(boxes), *output_size, channels)


def reference_roi_pool(features, boxes, box_indices, output_size, spatial_scale):
    """torchvision's RoIPool: bin bounds in float32 arithmetic (as its kernel), first maximum.

    Returns (pooled [K, oh, ow, C] float64, argmax [K, oh, ow, C] flat y * W + x or -1)."""
    _, height, width, channels = features.shape
    oh, ow = output_size
    f32 = np.float32
    pooled = np.zeros((len(boxes), oh, ow, channels))
    argmax = -np.ones((len(boxes), oh, ow, channels), np.int64)
    for k, (box, image) in enumerate(zip(boxes, box_indices)):
        scaled = [float(f32(v) * f32(spatial_scale)) for v in box]
        if not np.all(np.isfinite(scaled)):
            continue
        x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(v) + 0.5), v)) for v in scaled)
        bin_h = f32(max(y2 - y1 + 1, 1)) / f32(oh)
        bin_w = f32(max(x2 - x1 + 1, 1)) / f32(ow)
        for ph in range(oh):
            h_lo = min(max(math.floor(f32(ph) * bin_h) + y1, 0), height)
            h_hi = min(max(math.ceil(f32(ph + 1) * bin_h) + y1, 0), height)
            for pw in range(ow):
                w_lo = min(max(math.floor(f32(pw) * bin_w) + x1, 0), width)
                w_hi = min(max(math.ceil(f32(pw + 1) * bin_w) + x1, 0), width)
                if h_hi <= h_lo or w_hi <= w_lo:
                    continue
                region = features[image, h_lo:h_hi, w_lo:w_hi].reshape(-1, channels)
                first = region.argmax(axis=0)  # row-major scan, first of equal maxima
                pooled[k, ph, pw] = region[first, np.arange(channels)]
                row, col = np.divmod(first, w_hi - w_lo)
                argmax[k, ph, pw] = (h_lo + row) * width + w_lo + col
    return pooled, argmax


@functools.cache
def ort_roi_align(output_size, spatial_scale, sampling_ratio, aligned):
    """An ONNX Runtime session running ONNX RoiAlign (opset 16, NCHW, mode avg)."""
    node = helper.make_node(
        "RoiAlign",
        ["X", "rois", "batch_indices"],
        ["Y"],
        mode="avg",
        output_height=output_size[0],
        output_width=output_size[1],
        sampling_ratio=sampling_ratio,
        spatial_scale=spatial_scale,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
    )
    graph = helper.make_graph(
        [node],
        "roi_align",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "C", "H", "W"]),
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 4]),
            helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["K", "C", *output_size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8  # onnx may write an IR version newer than onnxruntime reads
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(features, boxes, box_indices):
        out = session.run(
            None,
            {
                "X": np.ascontiguousarray(features.transpose(0, 3, 1, 2)),
                "rois": boxes,
                "batch_indices": box_indices.astype(np.int64),
            },
        )[0]
        return out.transpose(0, 2, 3, 1)

    return run


jit_roi_align = jax.jit(
    roi_align, static_argnames=("output_size", "spatial_scale", "sampling_ratio", "aligned", "max_sampling_ratio")
)
jit_roi_pool = jax.jit(roi_pool, static_argnames=("output_size", "spatial_scale"))

# --------------------------------------------------------------------------- RoIAlign


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_roi_align_matches_onnxruntime_and_float64_reference(sampling_ratio, aligned):
    seed, rng = fresh_rng()
    scale = float(rng.choice([1.0, 0.5, 0.25]))
    features, boxes, box_indices = random_case(rng, num_boxes=150, scale=scale)
    output_size = tuple(int(v) for v in rng.integers(1, 8, 2))
    ours = np.asarray(
        jit_roi_align(
            features,
            boxes,
            box_indices,
            output_size=output_size,
            spatial_scale=scale,
            sampling_ratio=sampling_ratio,
            aligned=aligned,
        )
    )
    peer = ort_roi_align(output_size, scale, sampling_ratio, aligned)(features, boxes, box_indices)
    ref = reference_roi_align(features, boxes, box_indices, output_size, scale, sampling_ratio, aligned)
    off_edge = ~samples_near_edges(boxes, features.shape[:3], output_size, scale, sampling_ratio, aligned)
    context = f"seed={seed} shape={features.shape} output={output_size} scale={scale} compared {off_edge.sum()} RoIs"
    assert off_edge.sum() >= 100, context
    assert np.abs(ours - peer)[off_edge].max() <= TOLERANCE, context
    assert np.abs(ours - ref)[off_edge].max() <= TOLERANCE, context


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_exact_on_the_validity_edges(aligned):
    """Dyadic boxes, power-of-two bins and grids: every coordinate is exact in float32, and many
    samples fall exactly on -1, 0, H - 1 or H, where RoIAlign's clamps switch."""
    seed, rng = fresh_rng()
    batch, height, width = 2, int(rng.integers(1, 20)), int(rng.integers(1, 20))
    features = rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)
    corners = rng.integers(-12, 4 * max(height, width) + 12, (200, 4)) / 4.0
    boxes = np.concatenate(
        [np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], axis=1
    )
    boxes[:50] = boxes[:50, [2, 3, 0, 1]]  # inverted too
    boxes = boxes.astype(np.float32)
    box_indices = rng.integers(0, batch, len(boxes)).astype(np.int32)
    output_size = tuple(int(v) for v in rng.choice([1, 2, 4], 2))
    sampling_ratio = int(rng.choice([1, 2, 4]))
    ours = np.asarray(
        jit_roi_align(
            features, boxes, box_indices, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned
        )
    )
    peer = ort_roi_align(output_size, 1.0, sampling_ratio, aligned)(features, boxes, box_indices)
    ref = reference_roi_align(features, boxes, box_indices, output_size, 1.0, sampling_ratio, aligned)
    edges = samples_near_edges(boxes, features.shape[:3], output_size, 1.0, sampling_ratio, aligned, margin=1e-9)
    context = f"seed={seed} shape={features.shape} output={output_size} s={sampling_ratio}"
    assert edges.any(), context
    assert np.abs(ours - peer).max() <= TOLERANCE, context
    assert np.abs(ours - ref).max() <= TOLERANCE, context


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_adaptive_sampling_matches_onnxruntime_within_cap(aligned):
    """sampling_ratio=0: ceil(roi / out) samples per bin; a cap covering every RoI is exact."""
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=120)
    output_size = tuple(int(v) for v in rng.integers(2, 6, 2))
    inside = rng.uniform(size=len(boxes)) < 0.5  # half the RoIs kept inside the map
    height, width = features.shape[1:3]
    boxes[inside] = np.sort(rng.uniform(0, 1, (inside.sum(), 2, 2)), axis=1).reshape(-1, 4)[:, [0, 2, 1, 3]] * np.array(
        [width, height, width, height], np.float32
    )
    boxes = boxes.astype(np.float32)
    roi = (boxes[:, 2:] - boxes[:, :2]).max()
    cap = max(1, math.ceil((roi + 1) / min(output_size)))
    ours = np.asarray(
        jit_roi_align(
            features,
            boxes,
            box_indices,
            output_size=output_size,
            sampling_ratio=0,
            aligned=aligned,
            max_sampling_ratio=cap,
        )
    )
    ref = reference_roi_align(features, boxes, box_indices, output_size, 1.0, 0, aligned)
    # ONNX Runtime's adaptive grid overflows (error, then a crash) on inverted boxes.
    ordered = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    peer = ort_roi_align(output_size, 1.0, 0, aligned)(features, boxes[ordered], box_indices[ordered])
    off_edge = ~samples_near_edges(boxes, features.shape[:3], output_size, 1.0, 0, aligned)
    context = f"seed={seed} shape={features.shape} output={output_size} cap={cap}"
    assert np.abs(ours[ordered] - peer)[off_edge[ordered]].max() <= TOLERANCE, context
    assert np.abs(ours - ref)[off_edge].max() <= TOLERANCE, context


@pytest.mark.parametrize("output_size", [(3, 1), (3, 7)])
def test_roi_align_large_grids_on_both_formulations(output_size):
    """sampling_ratio 6 on a 20..32 px map: (3, 1) bins take the per-sample gather loop,
    (3, 7) the rows-then-columns formulation (cheaper there); both must match."""
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=100)
    features = rng.uniform(0, 1, features.shape[:1] + tuple(rng.integers(20, 33, 2)) + features.shape[3:]).astype(
        np.float32
    )
    boxes = random_boxes(rng, 100, *features.shape[1:3])
    ours = np.asarray(
        jit_roi_align(features, boxes, box_indices, output_size=output_size, sampling_ratio=6, aligned=True)
    )
    peer = ort_roi_align(output_size, 1.0, 6, True)(features, boxes, box_indices)
    ref = reference_roi_align(features, boxes, box_indices, output_size, 1.0, 6, True)
    off_edge = ~samples_near_edges(boxes, features.shape[:3], output_size, 1.0, 6, True)
    context = f"seed={seed} shape={features.shape} compared {off_edge.sum()} RoIs"
    assert np.abs(ours - peer)[off_edge].max() <= TOLERANCE, context
    assert np.abs(ours - ref)[off_edge].max() <= TOLERANCE, context


def test_roi_align_adaptive_sampling_clips_grid_at_max_sampling_ratio():
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=100)
    ours = np.asarray(
        jit_roi_align(
            features, boxes, box_indices, output_size=(3, 2), sampling_ratio=-1, aligned=True, max_sampling_ratio=2
        )
    )
    ref = reference_roi_align(features, boxes, box_indices, (3, 2), 1.0, 0, True, max_sampling_ratio=2)
    assert np.abs(ours - ref).max() <= TOLERANCE, f"seed={seed}"


def test_roi_align_adaptive_sampling_without_cap_is_refused():
    features = jnp.zeros((1, 8, 8, 2))
    with pytest.raises(ValueError, match="max_sampling_ratio"):
        roi_align(features, jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32), 2, sampling_ratio=0)


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_gradient_is_transposed_interpolation(aligned):
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=100)
    upstream = rng.standard_normal((len(boxes), 4, 3, features.shape[3])).astype(np.float32)
    # RoIs with a sample on RoIAlign's discontinuities (-1, H, W) send no gradient here.
    upstream[samples_near_edges(boxes, features.shape[:3], (4, 3), 1.0, 2, aligned)] = 0
    grad = jax.grad(
        lambda f: jnp.sum(
            jit_roi_align(f, boxes, box_indices, output_size=(4, 3), sampling_ratio=2, aligned=aligned) * upstream
        )
    )(features)
    rows, cols, weights = reference_roi_align_terms(boxes, box_indices, features.shape[:3], (4, 3), 1.0, 2, aligned)
    ref = np.zeros((np.prod(features.shape[:3]), features.shape[3]))
    np.add.at(ref, cols, weights[:, None] * upstream.reshape(-1, features.shape[3])[rows])
    ref = ref.reshape(features.shape)
    assert np.abs(np.asarray(grad) - ref).max() <= 1e-4, f"seed={seed}"


def test_roi_align_compiles_once_per_shape_and_vmaps_like_a_loop():
    seed, rng = fresh_rng()
    traces = []

    def traced(features, boxes, box_indices):
        traces.append(None)
        return roi_align(features, boxes, box_indices, (3, 3), 0.5, 2, True)

    jitted = jax.jit(traced)
    features = rng.uniform(-1, 1, (3, 2, 9, 11, 4)).astype(np.float32)
    boxes = np.stack([random_boxes(rng, 20, 9, 11, 0.5) for _ in range(3)])
    box_indices = rng.integers(0, 2, (3, 20)).astype(np.int32)
    loop = [jitted(features[i], boxes[i], box_indices[i]) for i in range(3)]
    assert len(traces) == 1, f"seed={seed}: traced {len(traces)} times for one shape"
    batched = jax.jit(jax.vmap(traced))(features, boxes, box_indices)
    np.testing.assert_allclose(batched, np.stack(loop), atol=1e-6, err_msg=f"seed={seed}")


def test_roi_align_rejects_bad_shapes():
    features = jnp.zeros((1, 8, 8, 2))
    with pytest.raises(ValueError, match="features"):
        roi_align(features[0], jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32), 2)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(features, jnp.zeros((3, 5)), jnp.zeros((3,), jnp.int32), 2)
    with pytest.raises(ValueError, match="box_indices"):
        roi_align(features, jnp.zeros((3, 4)), jnp.zeros((4,), jnp.int32), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(features, jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32), (0, 2))
    with pytest.raises(ValueError, match="box_indices"):
        roi_pool(features, jnp.zeros((3, 4)), jnp.zeros((3,)), 2)
    with pytest.raises(ValueError, match="spatial_scales"):
        multilevel_roi_align([features], jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32), jnp.zeros((3,), jnp.int32), 2)
    with pytest.raises(ValueError, match="'top'"):
        multilevel_roi_align(
            {"top": features}, jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32), jnp.zeros((3,), jnp.int32), 2
        )


# --------------------------------------------------------------------------- RoIPool


def test_roi_pool_matches_torchvision_algorithm_with_ties_and_half_pixels():
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=120, channels=3, scale=0.25)
    features = rng.integers(-2, 3, features.shape).astype(np.float32)  # many exact ties
    boxes[:30] = np.round(boxes[:30] * 0.5) / 0.5 + 2.0  # x * 0.25 lands on .5: round away
    output_size = tuple(int(v) for v in rng.integers(1, 8, 2))
    ours = np.asarray(jit_roi_pool(features, boxes, box_indices, output_size=output_size, spatial_scale=0.25))
    ref, _ = reference_roi_pool(features, boxes, box_indices, output_size, 0.25)
    assert np.array_equal(ours, ref), f"seed={seed} output={output_size} shape={features.shape}"


@pytest.mark.parametrize("height,width", [(1, 1), (1, 9), (7, 1)])
def test_roi_pool_on_a_map_one_pixel_high_or_wide(height, width):
    """No power-of-two window above 1 exists along a 1-pixel axis (it once broke tracing there)."""
    seed, rng = fresh_rng()
    features = rng.integers(-2, 3, (2, height, width, 3)).astype(np.float32)
    boxes = random_boxes(rng, 40, height, width, 1.0)
    box_indices = rng.integers(0, 2, 40).astype(np.int32)
    ours = np.asarray(jit_roi_pool(features, boxes, box_indices, output_size=(2, 3)))
    ref, _ = reference_roi_pool(features, boxes, box_indices, (2, 3), 1.0)
    assert np.array_equal(ours, ref), f"seed={seed}"


def test_roi_pool_gradient_goes_to_the_first_argmax_only():
    seed, rng = fresh_rng()
    features, boxes, box_indices = random_case(rng, num_boxes=100, channels=3)
    features = rng.integers(-2, 3, features.shape).astype(np.float32)
    upstream = rng.standard_normal((len(boxes), 3, 4, 3))
    grad = jax.grad(
        lambda f: jnp.sum(jit_roi_pool(f, boxes, box_indices, output_size=(3, 4)) * upstream.astype(np.float32))
    )(features)
    _, argmax = reference_roi_pool(features, boxes, box_indices, (3, 4), 1.0)
    ref = np.zeros(features.shape)
    width = features.shape[2]
    for (k, ph, pw, c), at in np.ndenumerate(argmax):
        if at >= 0:
            ref[box_indices[k], at // width, at % width, c] += upstream[k, ph, pw, c]
    assert np.abs(np.asarray(grad) - ref).max() <= 1e-5, f"seed={seed}"


def test_roi_pool_compiles_once_per_shape_and_vmaps_like_a_loop():
    seed, rng = fresh_rng()
    traces = []

    def traced(features, boxes, box_indices):
        traces.append(None)
        return roi_pool(features, boxes, box_indices, (2, 3), 0.5)

    jitted = jax.jit(traced)
    features = rng.uniform(-1, 1, (3, 2, 10, 7, 3)).astype(np.float32)
    boxes = np.stack([random_boxes(rng, 16, 10, 7, 0.5) for _ in range(3)])
    box_indices = rng.integers(0, 2, (3, 16)).astype(np.int32)
    for i in range(2):
        jitted(features[i], boxes[i], box_indices[i])
    assert len(traces) == 1, f"seed={seed}: traced {len(traces)} times for one shape"
    batched = jax.vmap(jitted)(features, boxes, box_indices)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], jitted(features[i], boxes[i], box_indices[i]), err_msg=f"seed={seed}")


# --------------------------------------------------------------------------- FPN


def reference_fpn_levels(boxes, min_level, max_level, canonical_size=224.0, canonical_level=4):
    area = (boxes[:, 2].astype(np.float64) - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.floor(canonical_level + np.log2(np.sqrt(np.maximum(area, 0)) / canonical_size + 1e-6))
    return np.clip(np.nan_to_num(level, nan=min_level), min_level, max_level).astype(np.int32)


def test_assign_fpn_levels_matches_level_mapper():
    seed, rng = fresh_rng()
    sides = np.exp(rng.uniform(np.log(1), np.log(1500), (300, 2)))
    sides[:20] = 224.0 * 2.0 ** rng.integers(-3, 3, (20, 1))  # exact level boundaries
    corner = rng.uniform(-50, 800, (300, 2))
    boxes = np.concatenate([corner, corner + sides], axis=1).astype(np.float32)
    boxes[20:30, 2] = boxes[20:30, 0]  # zero area
    ours = np.asarray(jax.jit(assign_fpn_levels)(boxes))
    assert np.array_equal(ours, reference_fpn_levels(boxes, 2, 5)), f"seed={seed}"


def test_multilevel_roi_align_reads_each_roi_from_its_level():
    seed, rng = fresh_rng()
    batch, channels, image = 2, 4, 256
    pyramid = {
        level: rng.uniform(0, 1, (batch, image >> level, (image - 64) >> level, channels)).astype(np.float32)
        for level in (3, 4, 5)
    }
    boxes = random_boxes(rng, 150, image, image - 64)
    box_indices = rng.integers(0, batch, len(boxes)).astype(np.int32)
    levels = np.asarray(jax.jit(assign_fpn_levels, static_argnums=(1, 2, 3))(boxes, 3, 5, 64))
    ours = np.asarray(
        jax.jit(multilevel_roi_align, static_argnums=(4, 5, 6))(pyramid, boxes, box_indices, levels, (5, 4), 2, True)
    )
    ref = np.zeros(ours.shape)
    for level, fmap in pyramid.items():
        chosen = levels == level
        ref[chosen] = reference_roi_align(fmap, boxes[chosen], box_indices[chosen], (5, 4), 2.0**-level, 2, True)
    assert np.abs(ours - ref).max() <= TOLERANCE, f"seed={seed} levels={np.bincount(levels)}"
    named = jax.jit(multilevel_roi_align, static_argnums=(4,))(
        {f"P{level}": fmap for level, fmap in pyramid.items()}, boxes, box_indices, levels, (5, 4)
    )
    np.testing.assert_array_equal(named, ours, err_msg=f"seed={seed}")
    as_list = jax.jit(multilevel_roi_align, static_argnums=(4,), static_argnames=("spatial_scales",))(
        [pyramid[3], pyramid[4], pyramid[5]],
        boxes,
        box_indices,
        levels - 3,
        (5, 4),
        spatial_scales=(1 / 8, 1 / 16, 1 / 32),
    )
    np.testing.assert_allclose(as_list, ours, atol=TOLERANCE, err_msg=f"seed={seed}")


def test_multilevel_roi_align_compiles_once_and_vmaps_like_a_loop():
    seed, rng = fresh_rng()
    traces = []
    pyramid = {level: rng.uniform(-1, 1, (2, 2, 64 >> level, 48 >> level, 3)).astype(np.float32) for level in (2, 3)}
    boxes = np.stack([random_boxes(rng, 24, 64, 48) for _ in range(2)])
    box_indices = rng.integers(0, 2, (2, 24)).astype(np.int32)
    levels = rng.integers(2, 4, (2, 24)).astype(np.int32)

    def traced(feats, b, i, lv):
        traces.append(None)
        return multilevel_roi_align(feats, b, i, lv, 3)

    jitted = jax.jit(traced)
    for n in range(2):
        jitted({k: v[n] for k, v in pyramid.items()}, boxes[n], box_indices[n], levels[n])
    assert len(traces) == 1, f"seed={seed}"
    batched = jax.vmap(jitted)(pyramid, boxes, box_indices, levels)
    for n in range(2):
        loop = jitted({k: v[n] for k, v in pyramid.items()}, boxes[n], box_indices[n], levels[n])
        np.testing.assert_allclose(batched[n], loop, atol=1e-6, err_msg=f"seed={seed}")


# --------------------------------------------------------------------------- bad inputs

coordinate = st.one_of(
    st.floats(-200, 200, width=32), st.sampled_from([0.0, 16.0, -1.0]), st.sampled_from([np.inf, -np.inf, np.nan])
)
bad_boxes = st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=6, max_size=6)
_FEATURES = np.random.default_rng(0).uniform(-1, 1, (2, 16, 12, 3)).astype(np.float32)
_INDICES = np.array([0, 1, 0, 1, 0, 1], np.int32)


def _value_and_feature_grad(op, **kwargs):
    @jax.jit
    def run(features, boxes):
        out, vjp = jax.vjp(lambda f: op(f, boxes, _INDICES, **kwargs), features)
        return out, vjp(jnp.ones_like(out))[0]

    return run


_ALIGN_BAD = _value_and_feature_grad(roi_align, output_size=3, spatial_scale=0.5)
_ALIGN_ADAPTIVE_BAD = _value_and_feature_grad(
    roi_align, output_size=3, spatial_scale=0.5, sampling_ratio=0, max_sampling_ratio=3, aligned=False
)
_POOL_BAD = _value_and_feature_grad(roi_pool, output_size=3, spatial_scale=0.5)


@settings(deadline=None, max_examples=40)
@given(bad_boxes)
def test_roi_ops_give_finite_values_and_gradients_for_bad_boxes(box_list):
    """Zero-area, inverted, outside, huge and non-finite boxes: finite outputs and gradients;
    boxes with a non-finite coordinate read nothing (output 0)."""
    boxes = np.array(box_list, np.float32)
    finite = np.isfinite(boxes).all(axis=1)
    for run in (_ALIGN_BAD, _ALIGN_ADAPTIVE_BAD, _POOL_BAD):
        out, grad = run(_FEATURES, boxes)
        assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(grad)).all()
        assert not np.asarray(out)[~finite].any()
    if finite.any():  # finite ones agree with the references; coordinates reach |100| pixels
        # here, so float32 coordinate rounding (ulp 7.6e-6) allows 2e-5.
        ref = reference_roi_align(_FEATURES, boxes[finite], _INDICES[finite], (3, 3), 0.5, 2, True)
        assert np.abs(np.asarray(_ALIGN_BAD(_FEATURES, boxes)[0])[finite] - ref).max() <= 2e-5
        ref_pool, _ = reference_roi_pool(_FEATURES, boxes[finite], _INDICES[finite], (3, 3), 0.5)
        assert np.array_equal(np.asarray(_POOL_BAD(_FEATURES, boxes)[0])[finite], ref_pool)
    levels = np.asarray(assign_fpn_levels(boxes))
    assert ((levels >= 2) & (levels <= 5)).all()

"""vision_jax.ops.boxes against float64 NumPy formulas, pycocotools and torchvision's BoxCoder rules."""
from __future__ import annotations

import math
import types

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from vision_jax.ops import boxes as vboxes

# Coordinates are pixels up to thousands, where float32 itself rounds by ~1e-4: coordinate
# outputs are compared with |err| <= 1e-5 * max(1, largest |coordinate| of the box), i.e. 1e-5
# relative to the box's scale; ratios (IoU, GIoU) with 1e-5 absolute.
TOL = 1e-5


def assert_close(got, ref, seed, what, scale_with_magnitude=True):
    got = np.asarray(got, np.float64)
    if scale_with_magnitude:
        bound = TOL * np.maximum(1.0, np.max(np.abs(ref), axis=-1, keepdims=True))
    else:
        bound = TOL
    err = np.abs(got - ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape} (seed={seed})"
    assert np.all(err <= bound), f"{what}: max err {err.max():.3g} (seed={seed})"
    return float(err.max()) if err.size else 0.0


# ----------------------------------------------------------------------------- NumPy references
def ref_area(b):
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def ref_inter_union(b1, b2):
    b1, b2 = b1[:, None].astype(np.float64), b2[None].astype(np.float64)
    w = np.clip(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0, None)
    h = np.clip(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0, None)
    inter = w * h
    return inter, ref_area(b1) + ref_area(b2) - inter


# Documented in boxes._safe_divide: denominators below 1e3 * sqrt(float32 tiny) count as 0.
SMALLEST_DENOMINATOR = 1e3 * float(np.finfo(np.float32).tiny) ** 0.5


def ratio(num, den):
    positive = den > SMALLEST_DENOMINATOR
    return np.where(positive, num / np.where(positive, den, 1.0), 0.0)


def ref_iou(b1, b2):
    return ratio(*ref_inter_union(b1, b2))


def ref_giou(b1, b2):
    inter, union = ref_inter_union(b1, b2)
    e1, e2 = b1[:, None].astype(np.float64), b2[None].astype(np.float64)
    ew = np.clip(np.maximum(e1[..., 2], e2[..., 2]) - np.minimum(e1[..., 0], e2[..., 0]), 0, None)
    eh = np.clip(np.maximum(e1[..., 3], e2[..., 3]) - np.minimum(e1[..., 1], e2[..., 1]), 0, None)
    return ratio(inter, union) - ratio(ew * eh - union, ew * eh)


def ref_diou(b1, b2, eps=1e-7):
    e1, e2 = b1[:, None].astype(np.float64), b2[None].astype(np.float64)
    diag = ((np.maximum(e1[..., 2], e2[..., 2]) - np.minimum(e1[..., 0], e2[..., 0])) ** 2
            + (np.maximum(e1[..., 3], e2[..., 3]) - np.minimum(e1[..., 1], e2[..., 1])) ** 2)
    dist = (((e1[..., 0] + e1[..., 2]) - (e2[..., 0] + e2[..., 2])) / 2) ** 2 + \
           (((e1[..., 1] + e1[..., 3]) - (e2[..., 1] + e2[..., 3])) / 2) ** 2
    return ref_iou(b1, b2) - np.minimum(dist / (diag + eps), 1.0)  # documented clamp


def ref_encode(gt, prop, weights):
    """torchvision BoxCoder.encode_single in float64."""
    wx, wy, ww, wh = weights
    gt, prop = gt.astype(np.float64), prop.astype(np.float64)
    pw, ph = prop[:, 2] - prop[:, 0], prop[:, 3] - prop[:, 1]
    px, py = prop[:, 0] + 0.5 * pw, prop[:, 1] + 0.5 * ph
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return np.stack([wx * (gx - px) / pw, wy * (gy - py) / ph, ww * np.log(gw / pw),
                     wh * np.log(gh / ph)], axis=1)


def ref_decode(deltas, boxes, weights, clamp=math.log(1000.0 / 16)):
    """torchvision BoxCoder.decode_single in float64 (one class)."""
    wx, wy, ww, wh = weights
    deltas, boxes = deltas.astype(np.float64), boxes.astype(np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = np.minimum(deltas[:, 2] / ww, clamp), np.minimum(deltas[:, 3] / wh, clamp)
    pcx, pcy, pw, ph = dx * w + cx, dy * h + cy, np.exp(dw) * w, np.exp(dh) * h
    return np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], axis=1)


# Every op is called through jax.jit: one compilation per test instead of one per primitive.
J = types.SimpleNamespace(
    box_convert=jax.jit(vboxes.box_convert, static_argnums=(1, 2)),
    xyxy_to_cxcywh=jax.jit(vboxes.xyxy_to_cxcywh),
    box_area=jax.jit(vboxes.box_area),
    box_iou=jax.jit(vboxes.box_iou),
    generalized_box_iou=jax.jit(vboxes.generalized_box_iou),
    distance_box_iou=jax.jit(vboxes.distance_box_iou),
    elementwise_box_iou=jax.jit(vboxes.elementwise_box_iou),
    elementwise_generalized_box_iou=jax.jit(vboxes.elementwise_generalized_box_iou),
    elementwise_distance_box_iou=jax.jit(vboxes.elementwise_distance_box_iou),
    box_ioa=jax.jit(vboxes.box_ioa),
    clip_boxes=jax.jit(vboxes.clip_boxes),
    small_box_mask=jax.jit(vboxes.small_box_mask),
    valid_box_mask=jax.jit(vboxes.valid_box_mask),
    encode_boxes=jax.jit(vboxes.encode_boxes, static_argnums=2),
    decode_boxes=jax.jit(vboxes.decode_boxes, static_argnums=2),
)


# ----------------------------------------------------------------------------- conversions
def test_box_convert_matches_formulas_for_all_format_pairs(rng, seed, box_sampler):
    xyxy = box_sampler(rng, 300).astype(np.float64)
    x1, y1, x2, y2 = xyxy.T
    formats = {"xyxy": xyxy, "cxcywh": np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1),
               "xywh": np.stack([x1, y1, x2 - x1, y2 - y1], 1)}
    for in_fmt, source in formats.items():
        for out_fmt, target in formats.items():
            got = J.box_convert(source.astype(np.float32), in_fmt, out_fmt)
            assert_close(got, target, seed, f"{in_fmt}->{out_fmt}")
    assert_close(J.xyxy_to_cxcywh(xyxy.astype(np.float32)), formats["cxcywh"], seed, "helper")


def test_box_convert_rejects_unknown_format_and_bad_shape():
    with pytest.raises(ValueError, match="in_fmt"):
        vboxes.box_convert(jnp.zeros((2, 4)), "yxyx", "xyxy")
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        vboxes.box_convert(jnp.zeros((2, 5)), "xyxy", "xywh")
    with pytest.raises(ValueError, match="boxes1 and boxes2"):
        vboxes.box_iou(jnp.zeros((2, 4)), jnp.zeros((3, 2, 4)))


# ----------------------------------------------------------------------------- IoU family
def test_box_area_matches_numpy(rng, seed, box_sampler):
    boxes = box_sampler(rng, 300)
    assert_close(J.box_area(boxes), ref_area(boxes.astype(np.float64)), seed, "area")


def test_box_iou_matches_pycocotools_and_float64_numpy(rng, seed, box_sampler):
    boxes1 = box_sampler(rng, 150, allow_inverted=False)
    boxes2 = box_sampler(rng, 170, allow_inverted=False)
    got = np.asarray(J.box_iou(boxes1, boxes2))
    # pycocotools takes (x, y, w, h) float64, returns [len(dt), len(gt)] with no +1 in widths.
    to_xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).astype(np.float64)
    coco = coco_mask.iou(to_xywh(boxes1), to_xywh(boxes2), np.zeros(len(boxes2), np.uint8))
    err_coco = assert_close(got, np.asarray(coco), seed, "vs pycocotools", False)
    err_np = assert_close(got, ref_iou(boxes1, boxes2), seed, "vs numpy", False)
    print(f"box_iou max err: pycocotools {err_coco:.2e}, numpy {err_np:.2e}")


def test_box_iou_of_inverted_and_empty_boxes_is_zero_not_nan(rng, seed, box_sampler):
    boxes = box_sampler(rng, 200, degenerate_fraction=0.6)
    got = np.asarray(J.box_iou(boxes, boxes))
    assert np.all(np.isfinite(got)), f"seed={seed}"
    assert_close(got, ref_iou(boxes, boxes), seed, "degenerate iou", False)
    empty = ~np.asarray(J.valid_box_mask(boxes))
    assert np.all(got[empty] == 0) and np.all(got[:, empty] == 0), f"seed={seed}"


def test_generalized_and_distance_iou_match_numpy(rng, seed, box_sampler):
    boxes1, boxes2 = box_sampler(rng, 120), box_sampler(rng, 130)
    assert_close(J.generalized_box_iou(boxes1, boxes2), ref_giou(boxes1, boxes2), seed,
                 "giou", False)
    assert_close(J.distance_box_iou(boxes1, boxes2), ref_diou(boxes1, boxes2), seed,
                 "diou", False)


def test_elementwise_variants_equal_the_pairwise_diagonal(rng, seed, box_sampler):
    boxes1, boxes2 = box_sampler(rng, 150), box_sampler(rng, 150)
    for elementwise, ref in ((J.elementwise_box_iou, ref_iou),
                             (J.elementwise_generalized_box_iou, ref_giou),
                             (J.elementwise_distance_box_iou, ref_diou)):
        assert_close(elementwise(boxes1, boxes2), np.diag(ref(boxes1, boxes2)), seed,
                     elementwise.__name__, False)


def test_box_ioa_is_intersection_over_second_area(rng, seed, box_sampler):
    boxes1, boxes2 = box_sampler(rng, 100), box_sampler(rng, 110)
    inter, _ = ref_inter_union(boxes1, boxes2)
    assert_close(J.box_ioa(boxes1, boxes2), ratio(inter, ref_area(boxes2.astype(np.float64))[None]),
                 seed, "ioa", False)


def test_iou_gradients_match_finite_differences(rng, seed):
    """d sum(IoU)/d boxes against float64 central differences of the NumPy reference."""
    centre = rng.uniform(20, 80, (12, 2))
    size = rng.uniform(10, 40, (12, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    boxes1, boxes2 = boxes[:6], boxes[6:]
    for fn, ref in ((J.box_iou, ref_iou), (J.generalized_box_iou, ref_giou)):
        grad = np.asarray(jax.jit(jax.grad(lambda b, other: jnp.sum(fn(b, other))))(
            boxes1.astype(np.float32), boxes2.astype(np.float32)))
        numeric = np.zeros_like(boxes1)
        for index in np.ndindex(boxes1.shape):
            step = np.zeros_like(boxes1)
            step[index] = 1e-4
            numeric[index] = (ref(boxes1 + step, boxes2).sum() - ref(boxes1 - step, boxes2).sum()) / 2e-4
        err = np.abs(grad - numeric).max()
        # Kinks (max/min switching) are measure-zero for random boxes; float32 gradients ~1e-6.
        assert err <= 1e-4, f"{fn.__name__} grad err {err:.2e} (seed={seed})"


# ----------------------------------------------------------------------------- clip and masks
def test_clip_and_masks_match_numpy(rng, seed, box_sampler):
    boxes = box_sampler(rng, 300)
    height, width = 150.0, 170.0
    ref = boxes.astype(np.float64).copy()
    ref[:, 0::2] = np.clip(ref[:, 0::2], 0, width)
    ref[:, 1::2] = np.clip(ref[:, 1::2], 0, height)
    assert_close(J.clip_boxes(boxes, height, width), ref, seed, "clip")
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_array_equal(J.small_box_mask(boxes, 8.0), ~((w >= 8) & (h >= 8)),
                                  err_msg=f"seed={seed}")
    np.testing.assert_array_equal(J.valid_box_mask(boxes), (w > 0) & (h > 0),
                                  err_msg=f"seed={seed}")


# ----------------------------------------------------------------------------- delta coding
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), "random"])
def test_encode_decode_match_torchvision_boxcoder(rng, seed, weights):
    if weights == "random":
        weights = tuple(rng.uniform(0.5, 12, 4))
    num = 400
    centre = rng.uniform(0, 800, (num, 2))
    size = rng.uniform(2, 300, (num, 2))
    proposals = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    gt_centre = centre + rng.normal(0, 0.3, (num, 2)) * size
    gt_size = size * np.exp(rng.normal(0, 0.5, (num, 2)))
    gt = np.concatenate([gt_centre - gt_size / 2, gt_centre + gt_size / 2], 1).astype(np.float32)
    err_enc = assert_close(J.encode_boxes(gt, proposals, weights), ref_encode(gt, proposals, weights),
                           seed, "encode")
    deltas = rng.normal(0, 1, (num, 4)) * np.asarray(weights)
    deltas[: num // 4, 2:] = rng.uniform(4, 9, (num // 4, 2)) * np.asarray(weights[2:])  # clamp
    deltas = deltas.astype(np.float32)
    err_dec = assert_close(J.decode_boxes(deltas, proposals, weights),
                           ref_decode(deltas, proposals, weights), seed, "decode")
    # Per-class layout [N, K, 4] with boxes [N, 1, 4] decodes each class like a separate call.
    per_class = J.decode_boxes(deltas.reshape(num // 4, 4, 4), proposals[: num // 4, None], weights)
    ref = np.stack([ref_decode(deltas.reshape(num // 4, 4, 4)[:, k], proposals[: num // 4], weights)
                    for k in range(4)], 1)
    assert_close(per_class, ref, seed, "decode per class")
    print(f"encode max abs err {err_enc:.2e}, decode max abs err {err_dec:.2e} px (boxes up to ~1e4 px)")


def test_decode_inverts_encode(rng, seed):
    centre = rng.uniform(0, 500, (200, 2))
    size = rng.uniform(4, 200, (200, 2))
    proposals = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    gt = proposals + rng.normal(0, 5, (200, 4)).astype(np.float32)
    gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 1)
    weights = (10.0, 10.0, 5.0, 5.0)
    roundtrip = J.decode_boxes(J.encode_boxes(gt, proposals, weights), proposals, weights)
    assert_close(roundtrip, gt.astype(np.float64), seed, "decode(encode(gt))")


# ----------------------------------------------------------------------------- bad inputs
finite_coordinates = st.floats(-300, 300, width=32, allow_nan=False, allow_infinity=False)
# Fixed shapes so that the jitted checks below compile once for all examples.
box_arrays = hnp.arrays(np.float32, (5, 4), elements=finite_coordinates)


@jax.jit
def iou_family_values_and_gradients(boxes1, boxes2):
    results = []
    for fn in (vboxes.box_iou, vboxes.generalized_box_iou, vboxes.distance_box_iou):
        values = fn(boxes1, boxes2)
        grads = jax.grad(lambda a, b: jnp.sum(fn(a, b)), argnums=(0, 1))(boxes1, boxes2)
        results.append((values, grads))
    return results


@settings(max_examples=40, deadline=None)
@given(boxes1=box_arrays, boxes2=box_arrays)
def test_iou_family_and_gradients_never_nan_on_arbitrary_boxes(boxes1, boxes2):
    """Zero-area, inverted, coincident, tiny and far-away boxes: finite values and gradients."""
    results = iou_family_values_and_gradients(boxes1, boxes2)
    for (values, grads), ref in zip(results, (ref_iou, ref_giou, ref_diou)):
        values = np.asarray(values)
        assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1 + 1e-6)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
        assert_close(values, ref(boxes1, boxes2), "hypothesis", ref.__name__, False)


@jax.jit
def encode_then_decode(reference_boxes, proposals):
    deltas = vboxes.encode_boxes(reference_boxes, proposals)
    return deltas, vboxes.decode_boxes(jnp.clip(deltas, -20, 20), proposals)


@settings(max_examples=40, deadline=None)
@given(boxes=box_arrays)
def test_encode_is_finite_for_empty_boxes(boxes):
    """Documented floor: empty proposals or targets give finite (large) deltas, never inf/NaN."""
    deltas, decoded = encode_then_decode(boxes[::-1], boxes)
    assert np.all(np.isfinite(np.asarray(deltas)))
    assert np.all(np.isfinite(decoded))


# ----------------------------------------------------------------------------- jit and vmap
OPS = {
    "box_iou": lambda a, b: vboxes.box_iou(a, b),
    "generalized_box_iou": lambda a, b: vboxes.generalized_box_iou(a, b),
    "distance_box_iou": lambda a, b: vboxes.distance_box_iou(a, b),
    "box_ioa": lambda a, b: vboxes.box_ioa(a, b),
    "encode_boxes": lambda a, b: vboxes.encode_boxes(a, b, (10.0, 10.0, 5.0, 5.0)),
    "decode_boxes": lambda a, b: vboxes.decode_boxes(a * 0.1, b),
    "box_convert": lambda a, b: vboxes.box_convert(a, "xyxy", "cxcywh") + b,
    "clip_boxes": lambda a, b: vboxes.clip_boxes(a, 100.0, 120.0) - b,
    "area_and_masks": lambda a, b: vboxes.box_area(a) * vboxes.small_box_mask(b, 5.0)
                                   + vboxes.valid_box_mask(a),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_jit_traces_once_per_shape_and_vmap_equals_loop(name, rng, seed, box_sampler):
    op = OPS[name]
    traces = []

    def counted(a, b):
        traces.append(1)
        return op(a, b)

    jitted = jax.jit(counted)
    single = jax.jit(op)  # a separately compiled copy: the reference for the loop
    for _ in range(2):
        a, b = box_sampler(rng, 16, degenerate_fraction=0.0), box_sampler(rng, 16, degenerate_fraction=0.0)
        np.testing.assert_allclose(jitted(a, b), single(a, b), rtol=1e-6, atol=1e-5, err_msg=f"seed={seed}")
    assert len(traces) == 1, f"{name} traced {len(traces)} times for one shape"
    batch_a = np.stack([box_sampler(rng, 16) for _ in range(3)])
    batch_b = np.stack([box_sampler(rng, 16) for _ in range(3)])
    batched = np.asarray(jax.jit(jax.vmap(op))(batch_a, batch_b))
    looped = np.stack([np.asarray(single(a, b)) for a, b in zip(batch_a, batch_b)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-5, err_msg=f"{name} seed={seed}")

"""Mask pasting and mask targets against float64 NumPy versions of detectron2's algorithms.

paste: detectron2's `_do_paste_mask` on CPU (one box at a time, skip_empty=True): image pixel
centres mapped to grid_sample coordinates of the box, bilinear with align_corners=False and
zero padding, inside the window [floor(x1) - 1, ceil(x2) + 1) x [floor(y1) - 1, ceil(y2) + 1).
mask targets: detectron2's `BitMasks.crop_and_resize` = torchvision RoIAlign(sampling_ratio=0,
aligned=True) of the 0/1 masks, then `>= 0.5`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vision_jax.evaluation import mask_paste
from vision_jax.ops.masks import mask_targets, paste_masks_in_image

TOLERANCE = 1e-5


def fresh_rng():
    seed = int(np.random.SeedSequence().entropy % (2**63))
    return seed, np.random.default_rng(seed)


def random_boxes(rng, num_boxes, height, width, largest=1.5):
    """float32 [K, 4]: inside, partly outside, sub-pixel and larger than the image."""
    centre = rng.uniform(-0.1, 1.1, (num_boxes, 2)) * [width, height]
    size = np.exp(rng.uniform(np.log(0.3), np.log(largest * max(height, width)), (num_boxes, 2)))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- references


def reference_paste(mask, box, height, width):
    """detectron2's _do_paste_mask for one box (CPU path), float64. Valid boxes only."""
    side = mask.shape[0]
    x0, y0, x1, y1 = box.astype(np.float64)
    image = np.zeros((height, width))
    x0_int, y0_int = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
    x1_int, y1_int = min(math.ceil(x1) + 1, width), min(math.ceil(y1) + 1, height)
    if x1_int <= x0_int or y1_int <= y0_int:
        return image
    grid_y = (np.arange(y0_int, y1_int) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid_x = (np.arange(x0_int, x1_int) + 0.5 - x0) / (x1 - x0) * 2 - 1
    # grid_sample, align_corners=False: unnormalise, then bilinear with zeros outside the mask
    iy = ((grid_y + 1) * side - 1) / 2
    ix = ((grid_x + 1) * side - 1) / 2
    iy, ix = np.meshgrid(iy, ix, indexing="ij")
    y_nw, x_nw = np.floor(iy).astype(int), np.floor(ix).astype(int)
    value = np.zeros(iy.shape)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y_nw + dy, x_nw + dx
            weight = (1 - np.abs(iy - yy)) * (1 - np.abs(ix - xx))
            inside = (yy >= 0) & (yy < side) & (xx >= 0) & (xx < side)
            value += np.where(inside, weight * mask[np.clip(yy, 0, side - 1), np.clip(xx, 0, side - 1)], 0.0)
    image[y0_int:y1_int, x0_int:x1_int] = value
    return image


def roi_align_axis_matrix(start, extent, bins, size, grid):
    """[bins, size] averaging weights of torchvision's RoIAlign along one axis (float64):
    grid samples per bin, -1 <= s <= size kept, s <= 0 -> 0, last pixel repeated."""
    coords = (
        start + np.arange(bins)[:, None] * (extent / bins) + (np.arange(grid) + 0.5) * (extent / bins) / grid
    )  # [bins, grid]
    matrix = np.zeros((bins, size))
    for b, g in np.ndindex(coords.shape):
        c = coords[b, g]
        if c < -1 or c > size:
            continue
        c = max(c, 0.0)
        low = int(c)
        if low >= size - 1:
            matrix[b, size - 1] += 1.0 / grid
            continue
        matrix[b, low] += (1 - (c - low)) / grid
        matrix[b, low + 1] += (c - low) / grid
    return matrix


def reference_crop_and_resize(gt_masks, indices, rois, mask_size):
    """detectron2's crop_and_resize before thresholding: RoIAlign(aligned=True, sampling 0).

    RoIAlign's bilinear weights factor into y and x weights and its "outside [-1, size]" test
    into a y test and an x test, so the kernel's average is Ay @ mask @ Ax^T."""
    _, height, width = gt_masks.shape
    out = np.zeros((len(rois), mask_size, mask_size))
    for k, (roi, g) in enumerate(zip(rois.astype(np.float64), indices)):
        x1, y1, x2, y2 = roi - 0.5
        grid_h, grid_w = math.ceil((y2 - y1) / mask_size), math.ceil((x2 - x1) / mask_size)
        if grid_h <= 0 or grid_w <= 0:
            continue
        along_y = roi_align_axis_matrix(y1, y2 - y1, mask_size, height, grid_h)
        along_x = roi_align_axis_matrix(x1, x2 - x1, mask_size, width, grid_w)
        out[k] = along_y @ gt_masks[g].astype(np.float64) @ along_x.T
    return out


def near_roi_align_edges(rois, mask_size, height, width, margin=1e-3):
    """bool [K]: a sample within `margin` of -1 or H / W, where RoIAlign is discontinuous and
    float32 vs float64 rounding may pick different sides (or ceil(roi / size) is ambiguous)."""
    near = np.zeros(len(rois), bool)
    for k, roi in enumerate(rois.astype(np.float64)):
        x1, y1, x2, y2 = roi - 0.5
        for start, extent, size in ((y1, y2 - y1, height), (x1, x2 - x1, width)):
            ratio = extent / mask_size
            if abs(ratio - round(ratio)) < margin:
                near[k] = True
            grid = max(math.ceil(ratio), 1)
            coords = start + np.arange(mask_size)[:, None] * ratio + (np.arange(grid) + 0.5) * ratio / grid
            near[k] |= bool(np.any((np.abs(coords + 1) < margin) | (np.abs(coords - size) < margin)))
    return near


# --------------------------------------------------------------------------- paste


def test_paste_masks_matches_detectron2_algorithm():
    seed, rng = fresh_rng()
    height, width = (int(v) for v in rng.integers(20, 90, 2))
    side = int(rng.choice([7, 14, 28]))
    masks = rng.uniform(0, 1, (120, side, side)).astype(np.float32)
    masks[:20] = masks[:20] > 0.5  # binary masks too
    boxes = random_boxes(rng, 120, height, width)
    soft = np.asarray(jax.jit(paste_masks_in_image, static_argnums=(2, 3, 4))(masks, boxes, height, width, None))
    ref = np.stack([reference_paste(m, b, height, width) for m, b in zip(masks, boxes)])
    context = f"seed={seed} image={height}x{width} mask={side}"
    assert np.abs(soft - ref).max() <= TOLERANCE, context
    binary = np.asarray(jax.jit(paste_masks_in_image, static_argnums=(2, 3))(masks, boxes, height, width))
    assert binary.dtype == bool
    decided = np.abs(ref - 0.5) > TOLERANCE
    assert np.array_equal(binary[decided], (ref >= 0.5)[decided]), context


def test_numpy_paste_at_any_image_size_matches_detectron2_algorithm():
    """vision_jax.evaluation.mask_paste (host, NumPy, one image size per call) against the same reference:
    soft values to float64 rounding, binary masks where the reference is not at 0.5."""
    seed, rng = fresh_rng()
    height, width = (int(v) for v in rng.integers(20, 120, 2))
    side = int(rng.choice([14, 28]))
    masks = rng.uniform(0, 1, (60, side, side))
    boxes = random_boxes(rng, 60, height, width).astype(np.float64)
    boxes[:3] = [[5, 5, 5, 9], [4, 4, 2, 9], [np.nan, 0, 3, 3]]  # no width, inverted, not finite: nothing pasted
    context = f"seed={seed} image={height}x{width} mask={side}"
    for mask, box in zip(masks, boxes):
        want = (reference_paste(mask, box, height, width) if np.all(np.isfinite(box)) and (box[2:] > box[:2]).all()
                else np.zeros((height, width)))
        pasted = mask_paste.paste_window(mask, box, height, width)
        soft = np.zeros((height, width))
        if pasted is not None:
            soft[pasted[0]] = pasted[1]
        assert np.abs(soft - want).max() <= 1e-9, context
        binary = mask_paste.paste_mask(mask, box, height, width)
        decided = np.abs(want - 0.5) > 1e-9
        assert binary.dtype == bool and np.array_equal(binary[decided], (want >= 0.5)[decided]), context


def test_paste_masks_gives_zeros_for_degenerate_boxes():
    seed, rng = fresh_rng()
    masks = rng.uniform(0.5, 1, (6, 14, 14)).astype(np.float32)
    boxes = np.array(
        [
            [10, 10, 10, 30],
            [10, 10, 30, 10],
            [30, 30, 10, 10],
            [30, 10, 29.5, 40],
            [np.nan, 0, 20, 20],
            [0, 0, np.inf, 20],
        ],
        np.float32,
    )
    pasted = np.asarray(jax.jit(paste_masks_in_image, static_argnums=(2, 3, 4))(masks, boxes, 48, 40, None))
    assert np.isfinite(pasted).all() and not pasted.any(), f"seed={seed}"


def test_paste_masks_compiles_once_and_vmaps_like_a_loop():
    seed, rng = fresh_rng()
    traces = []

    def traced(masks, boxes):
        traces.append(None)
        return paste_masks_in_image(masks, boxes, 30, 40, threshold=None)

    jitted = jax.jit(traced)
    masks = rng.uniform(0, 1, (3, 5, 7, 7)).astype(np.float32)
    boxes = np.stack([random_boxes(rng, 5, 30, 40) for _ in range(3)])
    loop = [jitted(masks[i], boxes[i]) for i in range(3)]
    assert len(traces) == 1, f"seed={seed}"
    np.testing.assert_allclose(
        jax.jit(jax.vmap(traced))(masks, boxes), np.stack(loop), atol=1e-6, err_msg=f"seed={seed}"
    )


def test_paste_masks_rejects_non_square_masks():
    with pytest.raises(ValueError, match="square"):
        paste_masks_in_image(jnp.zeros((2, 7, 8)), jnp.zeros((2, 4)), 10, 10)
    with pytest.raises(ValueError, match="boxes"):
        paste_masks_in_image(jnp.zeros((2, 7, 7)), jnp.zeros((3, 4)), 10, 10)


# --------------------------------------------------------------------------- mask targets


def random_target_case(rng, num_rois=120):
    num_gt = int(rng.integers(1, 6))
    height, width = (int(v) for v in rng.integers(16, 41, 2))
    yy, xx = np.mgrid[:height, :width]
    centres = rng.uniform(0, 1, (num_gt, 2)) * [width, height]
    radii = rng.uniform(3, 0.5 * max(height, width), (num_gt, 2))
    gt_masks = ((xx - centres[:, :1, None]) / radii[:, :1, None]) ** 2 + (
        (yy - centres[:, 1:, None]) / radii[:, 1:, None]
    ) ** 2 <= 1
    # Coordinates stay below 64 px (float32 ulp 3.8e-6): the 1e-5 tolerance holds for 0/1 masks.
    rois = random_boxes(rng, num_rois, height, width, largest=1.0)
    rois[:10] = rois[:10, [2, 3, 0, 1]]  # inverted: no samples, target 0
    matched = rng.integers(0, num_gt, num_rois).astype(np.int32)
    return gt_masks, matched, rois


def test_mask_targets_match_detectron2_crop_and_resize():
    seed, rng = fresh_rng()
    gt_masks, matched, rois = random_target_case(rng)
    mask_size = int(rng.choice([7, 14, 28]))
    # A cap covering every RoI here, so the adaptive grid is never clipped.
    cap = max(1, math.ceil(float(np.max(rois[:, 2:] - rois[:, :2])) / mask_size) + 1)
    run = jax.jit(mask_targets, static_argnums=(3, 4, 5))
    soft = np.asarray(run(gt_masks, matched, rois, mask_size, None, cap))
    binary = np.asarray(run(gt_masks, matched, rois, mask_size, 0.5, cap))
    ref = reference_crop_and_resize(gt_masks, matched, rois, mask_size)
    clear = ~near_roi_align_edges(rois, mask_size, *gt_masks.shape[1:])
    context = f"seed={seed} masks={gt_masks.shape} size={mask_size} compared={clear.sum()}"
    assert clear.sum() >= 100, context
    assert np.abs(soft - ref)[clear].max() <= TOLERANCE, context
    decided = (np.abs(ref - 0.5) > TOLERANCE) & clear[:, None, None]
    assert binary.dtype == np.float32
    assert np.array_equal(binary[decided], (ref >= 0.5)[decided].astype(np.float32)), context


def test_mask_targets_default_cap_is_exact_for_rois_inside_the_image():
    seed, rng = fresh_rng()
    gt_masks, matched, _ = random_target_case(rng)
    height, width = gt_masks.shape[1:]
    corners = np.sort(rng.uniform(0, 1, (120, 2, 2)), axis=1) * [width, height]
    rois = corners.reshape(-1, 4).astype(np.float32)  # (x1, y1, x2, y2), inside the image
    soft = np.asarray(jax.jit(mask_targets, static_argnums=(3, 4))(gt_masks, matched, rois, 7, None))
    ref = reference_crop_and_resize(gt_masks, matched, rois, 7)
    clear = ~near_roi_align_edges(rois, 7, height, width)
    assert np.abs(soft - ref)[clear].max() <= TOLERANCE, f"seed={seed} compared={clear.sum()}"


def test_mask_targets_compile_once_and_vmap_like_a_loop():
    seed, rng = fresh_rng()
    traces = []

    def traced(gt_masks, matched, rois):
        traces.append(None)
        return mask_targets(gt_masks, matched, rois, 6, None)

    jitted = jax.jit(traced)
    cases = [random_target_case(rng, 12) for _ in range(3)]
    gt_masks = np.stack([np.resize(c[0], (2, 20, 24)) for c in cases])
    matched = np.stack([c[1] % 2 for c in cases])
    rois = np.stack([random_boxes(rng, 12, 20, 24) for _ in range(3)])
    loop = [jitted(gt_masks[i], matched[i], rois[i]) for i in range(3)]
    assert len(traces) == 1, f"seed={seed}"
    np.testing.assert_allclose(
        jax.jit(jax.vmap(traced))(gt_masks, matched, rois), np.stack(loop), atol=1e-6, err_msg=f"seed={seed}"
    )


# --------------------------------------------------------------------------- bad inputs

coordinate = st.one_of(
    st.floats(-100, 100, width=32), st.sampled_from([0.0, 20.0]), st.sampled_from([np.inf, -np.inf, np.nan])
)
_MASKS = np.random.default_rng(0).uniform(0, 1, (5, 7, 7)).astype(np.float32)
_GT = np.random.default_rng(1).uniform(size=(2, 24, 20)) > 0.5
_MATCHED = np.array([0, 1, 0, 1, 1], np.int32)


@jax.jit
def _paste_and_grad(boxes):
    pasted, vjp = jax.vjp(lambda m: paste_masks_in_image(m, boxes, 24, 20, None), _MASKS)
    return pasted, vjp(jnp.ones_like(pasted))[0]


_targets = jax.jit(lambda rois: mask_targets(_GT, _MATCHED, rois, 5, None))


@settings(deadline=None, max_examples=40)
@given(st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=5, max_size=5))
def test_mask_ops_give_finite_results_for_bad_boxes(box_list):
    """Zero-area, inverted, outside and non-finite boxes: finite values in [0, 1], finite
    gradients, and nothing pasted for boxes without positive finite extent."""
    boxes = np.array(box_list, np.float32)
    pasted, grad = (np.asarray(a) for a in _paste_and_grad(boxes))
    assert np.isfinite(pasted).all() and np.isfinite(grad).all()
    assert (pasted >= -1e-6).all() and (pasted <= 1 + 1e-6).all()
    degenerate = ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    assert not pasted[degenerate].any()
    targets = np.asarray(_targets(boxes))
    assert np.isfinite(targets).all() and (targets >= -1e-6).all() and (targets <= 1 + 1e-6).all()
    assert not targets[~np.isfinite(boxes).all(axis=1)].any()

"""Ground-truth masks stored cropped to their boxes (data/instance_masks.py) and the mask targets cut
from them (ops.mask_targets_from_box_masks), against float64 NumPy references.

* the pipeline's box mask is RoIAlign (torchvision, aligned, 2 x 2 samples per cell) of the mask over
  its box, to uint8 rounding;
* the targets are that definition: the RoI in the box's cell coordinates, aligned RoIAlign with
  adaptive sampling on the box mask ringed with zeros;
* compared with detectron2's targets from the full mask (what the box masks replace), at
  K = 112 and M = 28, for RoIs inside the image (proposals are clipped to it): the binary targets
  differ on fewer than 1% of the pixels, only in bins within a pixel of the mask's edge, and the soft
  targets by less than 0.02 on average (measured: 0.07% - 0.4% of pixels, mean 0.002 - 0.004);
* a RoI that lies outside its ground-truth box (by more than a pixel) gets all-zero targets, exactly
  as from the full mask. Outside the image the two differ by design: torchvision's RoIAlign reads
  the border pixel for samples up to one pixel beyond the image, the box mask reads 0 there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import rcnn_reference as ref
import tensorflow as tf

from vision_jax.data.instance_masks import SAMPLES_PER_CELL, box_masks
from vision_jax.ops import mask_targets_from_box_masks

SIDE = 96


def blobs(rng, count: int, height: int = SIDE, width: int = SIDE) -> np.ndarray:
    """uint8 [count, height, width]: rotated ellipses (some touching the image border), non-empty."""
    yy, xx = np.mgrid[:height, :width] + 0.5
    out = []
    while len(out) < count:
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx, angle = rng.uniform(2, height / 2.5), rng.uniform(2, width / 2.5), rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / rx
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ry
        mask = (u**2 + v**2 <= 1).astype(np.uint8)
        if mask.sum() >= 4:
            out.append(mask)
    return np.stack(out)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 [G, 4] pixel-edge box of each mask."""
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, np.float32)


def reference_box_mask(mask: np.ndarray, box, size: int) -> np.ndarray:
    """float64 [size, size]: torchvision RoIAlign(aligned, sampling_ratio=SAMPLES_PER_CELL) of the mask."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    bin_h, bin_w, grid = (y2 - y1) / size, (x2 - x1) / size, SAMPLES_PER_CELL
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            out[i, j] = np.mean([ref.bilinear(mask.astype(np.float64), y1 + (i + (gy + 0.5) / grid) * bin_h,
                                              x1 + (j + (gx + 0.5) / grid) * bin_w)
                                 for gy in range(grid) for gx in range(grid)])  # fmt: skip
    return out


def reference_targets_from_box_masks(coverage, gt_boxes, gt_index, rois, size: int) -> np.ndarray:
    """float64 soft targets [R, size, size], the op's definition: the RoI in its box's cell
    coordinates (+1 for the ring of zeros), detectron2's crop_and_resize of the ringed box mask."""
    side = coverage.shape[1]
    out = []
    for g, roi in zip(gt_index, np.asarray(rois, np.float64)):
        box = np.asarray(gt_boxes[g], np.float64)
        cells = side / (box[2:] - box[:2])
        roi_cells = np.concatenate([(roi[:2] - box[:2]) * cells, (roi[2:] - box[:2]) * cells]) + 1
        out.append(ref.crop_and_resize(np.pad(coverage[g].astype(np.float64), 1), roi_cells, size))
    return np.stack(out)


def crop(masks, boxes, size):
    return box_masks(tf.constant(masks), tf.constant(boxes), size).numpy()


def test_box_masks_are_roi_align_of_the_mask_over_its_box(rng, seed):
    masks = blobs(rng, 4, 40, 56)
    boxes = tight_boxes(masks)
    boxes[0] = [3.3, 5.7, 4.1, 30.2]  # sub-pixel wide
    boxes[1] = [0.0, 0.0, 56.0, 40.0]  # the whole image
    size = 12
    got = crop(masks, boxes, size)
    assert got.shape == (4, size, size) and got.dtype == np.uint8, f"seed={seed}"
    want = np.stack([reference_box_mask(m, b, size) for m, b in zip(masks, boxes)])
    np.testing.assert_allclose(got / 255.0, want, rtol=0, atol=0.5 / 255 + 1e-4, err_msg=f"seed={seed}")


def test_mask_targets_from_box_masks_follow_their_definition(rng, seed):
    masks = blobs(rng, 3, 48, 48)
    boxes = tight_boxes(masks)
    coverage = crop(masks, boxes, 16) / 255.0
    gt_index = rng.integers(0, 3, 12).astype(np.int32)
    box = boxes[gt_index]
    wh = np.concatenate([box[:, 2:] - box[:, :2]] * 2, 1)
    rois = (box + rng.uniform(-0.4, 0.4, (12, 4)) * wh).astype(np.float32)  # inside, across and outside the box
    rois[:, 2:] = np.maximum(rois[:, 2:], rois[:, :2] + 0.5)
    op = jax.jit(mask_targets_from_box_masks, static_argnames=("mask_size", "threshold", "max_sampling_ratio"))
    got = np.asarray(op(jnp.asarray(coverage, jnp.float32), boxes, gt_index, rois, mask_size=7, threshold=None,
                        max_sampling_ratio=8))  # fmt: skip
    want = reference_targets_from_box_masks(coverage, boxes, gt_index, rois, 7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"seed={seed}")
    binary = np.asarray(op(jnp.asarray(coverage, jnp.float32), boxes, gt_index, rois, mask_size=7, threshold=0.5))
    decided = np.abs(want - 0.5) > 1e-4
    np.testing.assert_array_equal(binary[decided], (want >= 0.5)[decided], err_msg=f"seed={seed}")


def near_mask_edge(mask: np.ndarray, roi, size: int, row: int, col: int) -> bool:
    """Whether target bin (row, col) of the RoI, widened by one pixel each way, holds mask and non-mask
    pixels: the bin lies on the mask's boundary in image pixels."""
    x1, y1, x2, y2 = (float(v) for v in roi)
    bin_w, bin_h = (x2 - x1) / size, (y2 - y1) / size
    left, right = x1 + col * bin_w - 1, x1 + (col + 1) * bin_w + 1
    top, bottom = y1 + row * bin_h - 1, y1 + (row + 1) * bin_h + 1
    window = mask[max(int(np.floor(top)), 0):max(int(np.ceil(bottom)), 1), max(int(np.floor(left)), 0):max(int(np.ceil(right)), 1)]
    return window.size > 0 and window.min() != window.max()


def test_box_mask_targets_match_full_mask_targets_inside_the_image(rng, seed):
    masks = blobs(rng, 4)
    boxes = tight_boxes(masks)
    coverage = crop(masks, boxes, 112) / 255.0
    num_rois = 40
    gt_index = rng.integers(0, 4, num_rois).astype(np.int32)
    box = boxes[gt_index].astype(np.float64)
    wh = np.concatenate([box[:, 2:] - box[:, :2]] * 2, 1)
    shrink = rng.uniform(0, 0.3, (num_rois, 1)) * wh * [1, 1, -1, -1]
    rois = np.where(np.arange(num_rois)[:, None] % 2 == 0, box + shrink,  # inside the box
                    box + rng.uniform(-0.25, 0.25, (num_rois, 4)) * wh)  # across its edges
    rois = np.clip(rois, 0, SIDE).astype(np.float32)  # proposals are clipped to the image
    got = np.asarray(mask_targets_from_box_masks(jnp.asarray(coverage, jnp.float32), boxes, gt_index, rois, 28,
                                                 threshold=None))  # fmt: skip
    want = ref.mask_targets(masks, gt_index, rois, (SIDE, SIDE), 28)
    context = f"seed={seed}"
    assert np.abs(got - want).mean() < 0.02, context
    differ = (got >= 0.5) != (want >= 0.5)
    assert differ.mean() < 0.01, f"{differ.mean():.4f} of the binary targets differ, {context}"
    for r, row, col in zip(*np.nonzero(differ)):
        assert near_mask_edge(masks[gt_index[r]], rois[r], 28, row, col), f"RoI {rois[r]} bin {row, col}: {context}"


def test_rois_outside_the_ground_truth_box_get_zero_targets(rng, seed):
    masks = np.pad(blobs(rng, 3), ((0, 0), (0, 0), (0, SIDE)))  # room on the right of every box
    boxes = tight_boxes(masks)
    coverage = crop(masks, boxes, 112) / 255.0
    gt_index = np.array([0, 1, 2, 0], np.int32)
    box = boxes[gt_index]
    width = box[:, 2] - box[:, 0]
    # Each RoI starts 1.5 px beyond the box's right edge (a RoI reaching into the box reads it).
    rois = np.stack([box[:, 2] + 1.5, box[:, 1], box[:, 2] + 1.5 + width, box[:, 3]], 1).astype(np.float32)
    got = np.asarray(mask_targets_from_box_masks(jnp.asarray(coverage, jnp.float32), boxes, gt_index, rois, 28,
                                                 threshold=None))  # fmt: skip
    assert np.all(got == 0), f"seed={seed}"
    want = ref.mask_targets(masks, gt_index, rois, masks.shape[1:], 28)
    assert np.all(want == 0), f"seed={seed}"

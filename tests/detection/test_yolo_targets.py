"""YOLO v1 / v3 target assignment, ignore mask and losses against the float64 NumPy reference
(tests/detection/yolo_reference.py), on fresh random boxes (the seed is printed by conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yolo_reference as ref

from vision_jax.ops.yolo_targets import (
    yolo_v1_loss,
    yolo_v1_targets,
    yolo_v3_decode,
    yolo_v3_layout,
    yolo_v3_loss,
    yolo_v3_targets,
)

HEIGHT = WIDTH = 64
NUM_CLASSES = 4
PRIORS = (
    (5.0, 7.0),
    (9.0, 6.0),
    (8.0, 12.0),
    (14.0, 10.0),
    (12.0, 20.0),
    (20.0, 14.0),
    (22.0, 26.0),
    (34.0, 24.0),
    (40.0, 44.0),
)
MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
SHAPES = ((2, 2), (4, 4), (8, 8))
STRIDES = (32, 16, 8)


def random_ground_truth(rng, count=14):
    """Boxes of 3-50 px anywhere in the image, a few duplicates of others' centres (collisions),
    padding rows, crowd rows and a zero-width box."""
    centres = rng.uniform(0, WIDTH, size=(count, 2))
    sizes = rng.uniform(3, 50, size=(count, 2))
    duplicates = rng.choice(count, 3, replace=False)
    centres[duplicates] = centres[(duplicates + 1) % count] + rng.uniform(-0.5, 0.5, size=(3, 2))
    sizes[duplicates] = sizes[(duplicates + 1) % count] * rng.uniform(0.97, 1.03, size=(3, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    boxes[-1, 2] = boxes[-1, 0]  # degenerate: never assigned
    classes = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    valid = np.ones(count, bool)
    valid[rng.choice(count - 1, 2, replace=False)] = False  # padding
    crowd = np.zeros(count, bool)
    crowd[rng.choice(count - 1, 1)] = True
    classes[~valid] = -1
    return boxes, classes, valid, crowd


def assert_targets_equal(got, want, seed, keys):
    for key in keys:
        if want[key].dtype == bool or np.issubdtype(want[key].dtype, np.integer):
            np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=f"{key}, seed={seed}")
        else:
            np.testing.assert_allclose(
                np.asarray(got[key]), want[key], rtol=1e-5, atol=2e-5, err_msg=f"{key}, seed={seed}"
            )


# ----------------------------------------------------------------------------- v1
def random_v1_predictions(rng, grid=4, boxes_per_cell=3):
    boxes = rng.uniform(0.05, 0.95, size=(grid, grid, boxes_per_cell, 4)).astype(np.float32)
    # Some cells with tiny predictors (of distinct sizes: no IoU ties), which often miss the truth
    # altogether (the RMSE rule).
    far = rng.random((grid, grid)) < 0.3
    boxes[far, :, 2:] = rng.uniform(0.01, 0.06, size=(int(far.sum()), boxes_per_cell, 2))
    return boxes


@pytest.mark.parametrize("rescore", [True, False])
def test_v1_targets_and_loss_match_numpy(rng, seed, rescore):
    gt_boxes, gt_classes, gt_valid, gt_crowd = random_ground_truth(rng)
    boxes = random_v1_predictions(rng)
    confidences = rng.random(boxes.shape[:3]).astype(np.float32)
    class_probs = rng.dirichlet(np.ones(NUM_CLASSES), size=boxes.shape[:2]).astype(np.float32)
    targets = jax.jit(yolo_v1_targets, static_argnums=(5, 6))(
        boxes, gt_boxes, gt_classes, gt_valid, gt_crowd, (HEIGHT, WIDTH), NUM_CLASSES
    )
    want = ref.v1_targets(boxes, gt_boxes, gt_classes, gt_valid, gt_crowd, HEIGHT, WIDTH, NUM_CLASSES)
    assert want["object_cells"].sum() >= 3, f"seed={seed}: too few object cells to test anything"
    assert_targets_equal(
        targets, want, seed, ("gt_index", "object_cells", "responsible", "box_targets", "iou", "class_targets")
    )
    losses = jax.jit(yolo_v1_loss, static_argnums=(4, 5, 6))(
        boxes, confidences, class_probs, targets, 5.0, 0.5, rescore
    )
    want_losses = ref.v1_loss(boxes, confidences, class_probs, want, 5.0, 0.5, rescore)
    for name, value in want_losses.items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=1e-5, err_msg=f"{name}, seed={seed}")


def test_v1_two_objects_in_one_cell_the_last_wins_and_crowd_padding_are_never_assigned(seed):
    boxes = np.full((2, 2, 2, 4), 0.5, np.float32)
    gt_boxes = np.array(
        [[2, 2, 20, 20], [4, 4, 24, 26], [40, 40, 60, 60], [36, 36, 62, 62], [34, 34, 50, 50]], np.float32
    )
    classes = np.array([0, 1, 2, 3, -1], np.int32)
    valid = np.array([True, True, True, True, False])
    crowd = np.array([False, False, False, True, False])
    t = jax.jit(lambda *a: yolo_v1_targets(*a, (HEIGHT, WIDTH), NUM_CLASSES))(boxes, gt_boxes, classes, valid, crowd)
    # cell (0, 0) holds the centres of boxes 0 and 1: box 1 (the later) owns it; cell (1, 1) holds
    # boxes 2, 3 (crowd) and 4 (padding): only box 2 may own it.
    np.testing.assert_array_equal(np.asarray(t["gt_index"]), [[1, -1], [-1, 2]])
    np.testing.assert_array_equal(np.asarray(t["class_targets"]).argmax(-1)[[0, 1], [0, 1]], [1, 2])


def test_v1_without_overlap_the_closest_predictor_is_responsible():
    boxes = np.full((2, 2, 2, 4), 0.5, np.float32)
    boxes[0, 0, :, 2:] = 0.01  # two specks in cell (0, 0), neither touching the truth
    boxes[0, 0, 0, :2], boxes[0, 0, 1, :2] = (0.9, 0.9), (0.25, 0.25)
    gt = np.array([[2, 2, 6, 6]], np.float32)  # centre (4, 4): cell (0, 0); speck 1 at (8, 8) is closer
    t = jax.jit(lambda *a: yolo_v1_targets(*a, None, (HEIGHT, WIDTH), NUM_CLASSES))(
        boxes, gt, np.array([0]), np.array([True])
    )
    assert float(np.max(np.asarray(t["iou"]))) == 0.0
    np.testing.assert_array_equal(np.asarray(t["responsible"])[0, 0], [False, True])


# ----------------------------------------------------------------------------- v3
def v3_case(rng):
    layout = yolo_v3_layout(SHAPES, PRIORS, MASKS)
    num = layout["col"].shape[0]
    raw = rng.normal(0, 1, size=(num, 5 + NUM_CLASSES)).astype(np.float32)
    gt = random_ground_truth(rng)
    # The same raw outputs as the model's per-level [H, W, A, 5 + C] arrays, for the reference.
    levels, start = [], 0
    for (h, w), mask in zip(SHAPES, MASKS):
        levels.append(raw[start : start + h * w * len(mask)].reshape(h, w, len(mask), -1))
        start += h * w * len(mask)
    return layout, raw, levels, gt


def test_v3_layout_and_decode_match_numpy(rng, seed):
    """The one v3 box decoding (the models' too), including t_w, t_h past the exp clamp log(1000 / 16)."""
    layout, raw, levels, _ = v3_case(rng)
    wild = rng.choice(len(raw), 40, replace=False)
    raw[wild, 2:4] = rng.uniform(3.0, 60.0, size=(40, 2))  # `levels` are views of `raw`
    want = ref.v3_decode(levels, PRIORS, MASKS, STRIDES)
    got = yolo_v3_decode(jnp.asarray(raw), layout, STRIDES)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4, err_msg=f"seed={seed}")


@pytest.mark.parametrize("ignore_threshold,prior_iou_threshold", [(0.5, None), (0.3, None), (0.5, 0.3)])
def test_v3_targets_ignore_mask_and_loss_match_numpy(rng, seed, ignore_threshold, prior_iou_threshold):
    """The paper's single best prior, and AlexeyAB darknet's extra priors above an IoU threshold."""
    layout, raw, _, (gt_boxes, gt_classes, gt_valid, gt_crowd) = v3_case(rng)
    pred_boxes = np.array(yolo_v3_decode(jnp.asarray(raw), layout, STRIDES))
    # Move some predictions onto ground truths (jittered) so the ignore mask has work to do.
    chosen = rng.choice(len(pred_boxes), 40, replace=False)
    pred_boxes[chosen] = gt_boxes[rng.integers(0, len(gt_boxes), 40)] + rng.normal(0, 2, size=(40, 4))
    fn = jax.jit(lambda p, b, c, v, cr: yolo_v3_targets(
        p, b, c, v, cr, layout, PRIORS, STRIDES, (HEIGHT, WIDTH), NUM_CLASSES, ignore_threshold, prior_iou_threshold
    ))  # fmt: skip
    targets = fn(pred_boxes, gt_boxes, gt_classes, gt_valid, gt_crowd)
    want = ref.v3_targets(pred_boxes, gt_boxes, gt_classes, gt_valid, gt_crowd, SHAPES, PRIORS, MASKS, STRIDES,
                          HEIGHT, WIDTH, NUM_CLASSES, ignore_threshold, prior_iou_threshold)  # fmt: skip
    if prior_iou_threshold is not None:  # the extra priors must be exercised
        single = ref.v3_targets(pred_boxes, gt_boxes, gt_classes, gt_valid, gt_crowd, SHAPES, PRIORS, MASKS,
                                STRIDES, HEIGHT, WIDTH, NUM_CLASSES, ignore_threshold)  # fmt: skip
        assert want["assigned"].sum() > single["assigned"].sum() + 5, f"seed={seed}"
    assert want["assigned"].sum() >= 4 and want["ignored"].sum() >= 3, (
        f"seed={seed}: assigned {want['assigned'].sum()}, ignored {want['ignored'].sum()}: too few to test"
    )
    assert_targets_equal(
        targets,
        want,
        seed,
        ("gt_index", "assigned", "ignored", "max_iou", "box_targets", "box_weights", "class_targets"),
    )
    losses = jax.jit(yolo_v3_loss, static_argnums=(2, 3, 4))(raw, targets, 1.5, 1.0, 0.7)
    for name, value in ref.v3_loss(raw, want, 1.5, 1.0, 0.7).items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=1e-5, err_msg=f"{name}, seed={seed}")


def test_v3_collisions_last_wins_on_one_prior_both_kept_on_two_priors():
    layout = yolo_v3_layout(SHAPES, PRIORS, MASKS)
    # Boxes 0 and 1: same cell of stride 8, both best matched by prior 0 (5 x 7): box 1 wins.
    # Box 2: same cell, best prior 2 (8 x 12): assigned beside box 1. Box 3: crowd, never assigned.
    gt_boxes = np.array([[10, 10, 15, 17], [11, 10, 16, 17], [9, 8, 17, 20], [10, 10, 15, 17]], np.float32)
    classes, valid, crowd = np.array([0, 1, 2, 3]), np.ones(4, bool), np.array([False, False, False, True])
    pred = np.zeros((layout["col"].shape[0], 4), np.float32)
    t = jax.jit(lambda *a: yolo_v3_targets(*a, layout, PRIORS, STRIDES, (HEIGHT, WIDTH), NUM_CLASSES))(
        pred, gt_boxes, classes, valid, crowd
    )
    owners = np.asarray(t["gt_index"])
    assert sorted(owners[owners >= 0].tolist()) == [1, 2]
    fine = layout["offsets"][2]
    cell = fine + (1 * 8 + 1) * 3  # row 1, column 1 of the stride-8 grid
    np.testing.assert_array_equal(owners[cell : cell + 3], [1, -1, 2])


def test_v3_targets_vmap_over_a_batch_equals_per_image(rng, seed):
    layout = yolo_v3_layout(SHAPES, PRIORS, MASKS)
    cases = [random_ground_truth(rng) for _ in range(3)]
    preds = rng.uniform(0, 60, size=(3, layout["col"].shape[0], 2)).astype(np.float32)
    preds = np.concatenate([preds, preds + rng.uniform(2, 30, size=preds.shape).astype(np.float32)], -1)
    stacked = [np.stack(parts) for parts in zip(*cases)]

    def one(p, b, c, v, cr):
        return yolo_v3_targets(p, b, c, v, cr, layout, PRIORS, STRIDES, (HEIGHT, WIDTH), NUM_CLASSES)

    batched = jax.jit(jax.vmap(one))(preds, *stacked)
    for i, case in enumerate(cases):
        single = jax.jit(one)(preds[i], *case)
        for key in ("gt_index", "ignored"):
            np.testing.assert_array_equal(
                np.asarray(batched[key][i]), np.asarray(single[key]), err_msg=f"{key} seed={seed}"
            )
        np.testing.assert_allclose(batched["box_targets"][i], single["box_targets"], atol=1e-6, err_msg=f"seed={seed}")

"""SSD matching, hard negative mining, MultiBox loss and decoding against the float64 NumPy
reference in ssd_reference.py, on fresh random boxes and logits (seed printed by the fixture).
Background is the last logit (index C) and the label C, in the ops and the reference alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ssd_reference as ref

import vision_jax.ops as vops
from vision_jax.ops.ssd_targets import (
    SSD_BOX_WEIGHTS,
    hard_negative_mask,
    ssd_detect,
    ssd_loss,
    ssd_match,
    ssd_targets,
)

IMAGE = 64
SHAPES = [(8, 8), (4, 4), (2, 2), (1, 1)]
RATIOS = [(2,), (2, 3), (2,), (2,)]
SCALES = [0.1, 0.25, 0.45, 0.7, 0.95]


def anchors() -> np.ndarray:
    return np.asarray(vops.ssd_default_boxes(SHAPES, (IMAGE, IMAGE), RATIOS, scales=SCALES))


def draw_gt(rng, num_rows: int, num_valid: int):
    """Random boxes of 4-40 px inside the image, the first num_valid rows valid, some crowd."""
    xy = rng.uniform(0, IMAGE - 8, (num_rows, 2))
    wh = rng.uniform(4, 40, (num_rows, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, IMAGE)], 1).astype(np.float32)
    valid = np.arange(num_rows) < num_valid
    crowd = valid & (rng.uniform(size=num_rows) < 0.15)
    boxes[~valid] = 0.0
    return boxes, valid, crowd


def random_gt(rng, num_rows: int, num_valid: int, threshold: float = 0.5):
    """draw_gt, redrawn while matching has a near tie (about one draw in five at 10 boxes), so the
    float32 op and the float64 reference must agree exactly."""
    while True:
        boxes, valid, crowd = draw_gt(rng, num_rows, num_valid)
        if not ref.near_tie(ref.iou(boxes[valid & ~crowd], anchors()), threshold):
            return boxes, valid, crowd


def test_default_boxes_match_the_reference_generator():
    expected = ref.default_boxes(SHAPES, (IMAGE, IMAGE), RATIOS, SCALES)
    np.testing.assert_allclose(anchors(), expected, atol=1e-4)


def test_matching_matches_the_reference_on_random_boxes(rng, seed):
    a = anchors()
    for trial in range(6):
        boxes, valid, crowd = random_gt(rng, 10, int(rng.integers(0, 11)))
        matched, positive = jax.jit(ssd_match)(boxes, valid, a, crowd, 0.5)
        ref_matched, ref_positive = ref.match(boxes, valid, crowd, a, 0.5)
        np.testing.assert_array_equal(np.asarray(positive), ref_positive, err_msg=f"seed={seed} trial={trial}")
        np.testing.assert_array_equal(
            np.asarray(matched)[ref_positive], ref_matched[ref_positive], err_msg=f"seed={seed} trial={trial}"
        )
        eligible = valid & ~crowd
        assert not np.any(np.isin(np.asarray(matched)[ref_positive], np.nonzero(~eligible)[0])), (
            f"seed={seed}: crowd/padding matched"
        )


def test_every_valid_ground_truth_gets_a_default_box_even_below_threshold(rng, seed):
    a = anchors()
    # Thin boxes overlap every default box with IoU < 0.5: only the forced step can match them.
    x = rng.uniform(0, IMAGE - 30, 3)
    y = np.array([5.0, 25.0, 45.0])  # rows far enough apart that no two share a best default box
    boxes = np.stack([x, y, x + 30, y + 2.5], 1).astype(np.float32)
    valid = np.ones(3, bool)
    matched, positive = ssd_match(boxes, valid, a, None, 0.5)
    assert ref.iou(boxes, a).max() < 0.5, f"seed={seed}: the boxes must stay below the threshold"
    assert sorted(np.asarray(matched)[np.asarray(positive)].tolist()) == [0, 1, 2], f"seed={seed}"


def test_two_ground_truths_claiming_one_default_box_go_to_the_higher_iou(rng, seed):
    a = anchors()
    target = a[int(rng.integers(0, 64 * 4))]  # a level-0 default box
    shift = rng.uniform(0.5, 1.0)
    boxes = np.stack([target + [shift, 0, shift, 0], target + [2 * shift, 0, 2 * shift, 0]]).astype(np.float32)
    matched, positive = ssd_match(boxes, np.ones(2, bool), a, None, 0.99)
    ref_matched, ref_positive = ref.match(boxes, np.ones(2, bool), np.zeros(2, bool), a, 0.99)
    np.testing.assert_array_equal(np.asarray(positive), ref_positive, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(np.asarray(matched)[ref_positive], ref_matched[ref_positive], err_msg=f"seed={seed}")


def test_targets_encode_with_the_paper_variances(rng, seed):
    a = anchors()
    boxes, valid, crowd = random_gt(rng, 6, 6)
    num_classes = 4
    classes = rng.integers(0, num_classes, 6).astype(np.int32)
    labels, targets, _ = ssd_targets(boxes, classes, valid, a, num_classes, crowd, 0.5, SSD_BOX_WEIGHTS)
    ref_matched, ref_positive = ref.match(boxes, valid, crowd, a, 0.5)
    np.testing.assert_array_equal(
        np.asarray(labels), np.where(ref_positive, classes[ref_matched], num_classes), err_msg=f"seed={seed}"
    )
    expected = ref.encode(boxes[ref_matched[ref_positive]], a[ref_positive])
    np.testing.assert_allclose(
        np.asarray(targets)[ref_positive], expected, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}"
    )
    assert np.all(np.asarray(targets)[~ref_positive] == 0)


def test_unmatched_default_boxes_are_labelled_background_num_classes(rng, seed):
    a = anchors()
    num_classes = int(rng.integers(1, 6))
    padding_only = ssd_targets(np.zeros((3, 4), np.float32), np.zeros(3, np.int32), np.zeros(3, bool), a, num_classes)
    no_rows = ssd_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool), a, num_classes)
    for labels, targets, positive in (padding_only, no_rows):
        np.testing.assert_array_equal(np.asarray(labels), np.full(len(a), num_classes), err_msg=f"seed={seed}")
        assert not np.asarray(positive).any() and not np.asarray(targets).any(), f"seed={seed}"
    with pytest.raises(TypeError, match="num_classes must be a Python int"):
        ssd_targets(np.zeros((3, 4), np.float32), np.zeros(3, np.int32), np.ones(3, bool), a, np.zeros(3, bool))


def test_hard_negative_mining_matches_the_reference(rng, seed):
    for trial, num_boxes in enumerate((50, 400, 7)):
        loss = rng.exponential(size=num_boxes).astype(np.float32)
        loss[rng.integers(0, num_boxes, 3)] = loss[0]  # some ties
        positive = rng.uniform(size=num_boxes) < rng.uniform(0.0, 0.4)
        mined = jax.jit(hard_negative_mask, static_argnums=(2, 3))(loss, positive, 3.0, 0)
        np.testing.assert_array_equal(
            np.asarray(mined), ref.mine_negatives(loss, positive, 3.0), err_msg=f"seed={seed} trial={trial}"
        )


def test_an_image_without_positives_mines_no_negatives_unless_asked(rng, seed):
    loss = rng.exponential(size=100).astype(np.float32)
    none = np.zeros(100, bool)
    assert not np.asarray(hard_negative_mask(loss, none)).any()
    mined = np.asarray(hard_negative_mask(loss, none, 3.0, min_negatives=5))
    np.testing.assert_array_equal(mined, ref.mine_negatives(loss, none, 3.0, min_negatives=5), err_msg=f"seed={seed}")
    assert mined.sum() == 5


def test_multibox_loss_matches_the_reference(rng, seed):
    a = anchors()
    batch, num_classes = 3, 4
    labels, targets = [], []
    for b in range(batch):
        boxes, valid, crowd = random_gt(rng, 5, [0, 3, 5][b])  # image 0 has no positives
        classes = rng.integers(0, num_classes, 5).astype(np.int32)
        lab, tgt, _ = ssd_targets(boxes, classes, valid, a, num_classes, crowd)
        labels.append(np.asarray(lab))
        targets.append(np.asarray(tgt))
    labels, targets = np.stack(labels), np.stack(targets)
    logits = rng.normal(0, 2, (batch, len(a), num_classes + 1)).astype(np.float32)
    deltas = rng.normal(0, 1.5, (batch, len(a), 4)).astype(np.float32)
    out = jax.jit(ssd_loss)(logits, deltas, labels, targets)
    loss_cls, loss_box = ref.multibox_loss(logits, deltas, labels, targets)
    np.testing.assert_allclose(float(out["loss_cls"]), loss_cls, rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_allclose(float(out["loss_box_reg"]), loss_box, rtol=1e-5, err_msg=f"seed={seed}")
    assert float(out["num_negative"]) == 3 * float(out["num_positive"]), f"seed={seed}"
    # Gradients reach the logits of positives and mined negatives only.
    grad = jax.grad(lambda x: ssd_loss(x, deltas, labels, targets)["loss_cls"])(jnp.asarray(logits))
    touched = np.abs(np.asarray(grad)).sum(-1) > 0
    positive = labels < num_classes
    negative = np.stack(
        [ref.mine_negatives(-ref.log_softmax(logits[b])[:, num_classes], positive[b]) for b in range(batch)]
    )
    np.testing.assert_array_equal(touched, positive | negative, err_msg=f"seed={seed}")


@pytest.mark.parametrize("max_detections", [40, 300])
def test_decoding_matches_the_reference(rng, seed, max_detections):
    a = anchors()
    num_classes = 3
    logits = rng.normal(0, 2.5, (len(a), num_classes + 1)).astype(np.float32)
    deltas = rng.normal(0, 1.0, (len(a), 4)).astype(np.float32)
    image_size = np.asarray([IMAGE, IMAGE - 8], np.float32)
    args = {"score_threshold": 0.05, "nms_threshold": 0.45, "topk_candidates": 60, "max_detections": max_detections}
    out = jax.jit(ssd_detect, static_argnames=("topk_candidates", "max_detections"))(
        logits, deltas, a, image_size, **args
    )
    boxes, scores, classes, valid = (np.asarray(out[key]) for key in ("boxes", "scores", "classes", "valid"))
    ref_boxes, ref_scores, ref_classes = ref.detect(logits, deltas, a, image_size, 0.05, 0.45, 60, max_detections)
    assert valid.sum() == len(ref_scores), f"seed={seed}: {valid.sum()} detections vs {len(ref_scores)}"
    assert valid[: valid.sum()].all()
    np.testing.assert_allclose(scores[valid], ref_scores, rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(classes[valid], ref_classes, err_msg=f"seed={seed}")
    np.testing.assert_allclose(boxes[valid], ref_boxes, atol=1e-3, err_msg=f"seed={seed}")
    assert not np.any(valid[valid.sum() :]) and np.all(scores[~valid] == 0), f"seed={seed}: padding rows"

"""Fast R-CNN box head: RoI sampling, losses, inference and the FC head against float64 NumPy."""

import functools

import jax
import numpy as np
import rcnn_reference as ref
from test_rpn import random_gt

from vision_jax.models.rcnn import box_head as roi_box_head

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def random_proposals(rng, num, image_size):
    centre = rng.uniform(0, image_size, (num, 2))
    half = rng.uniform(3, 24, (num, 2))
    return np.clip(np.concatenate([centre - half, centre + half], 1), 0, image_size).astype(np.float32)


def test_targets_sample_proposals_and_ground_truth_like_detectron2(rng, seed):
    num_classes, num_samples, image_size = 4, 32, 64
    gt, gt_valid, crowd = random_gt(rng, 4, 2, image_size)
    gt_classes = np.where(gt_valid, rng.integers(0, num_classes, len(gt)), -1).astype(np.int32)
    # Half the proposals jitter around ground truth so that there are foreground candidates.
    near = gt[rng.integers(0, 4, 20)] + rng.normal(0, 3, (20, 4)).astype(np.float32)
    proposals = np.concatenate([near, random_proposals(rng, 40, image_size)]).astype(np.float32)
    proposal_valid = rng.uniform(size=60) < 0.8
    targets = functools.partial(
        roi_box_head.roi_targets,
        num_classes=num_classes,
        iou_threshold=0.5,
        num_samples=num_samples,
        positive_fraction=0.25,
        append_gt=True,
    )
    sampled = jax.jit(targets)(proposals, proposal_valid, gt, gt_classes, gt_valid, crowd, jax.random.PRNGKey(seed))
    boxes, classes, valid, box_targets, gt_index = (
        np.asarray(sampled[k]) for k in ("boxes", "classes", "valid", "box_targets", "gt_index")
    )
    assert gt_index.dtype == np.int32 and gt_index.shape == (num_samples,), f"seed={seed}"

    candidates, labels, matched_row = ref.roi_candidates(proposals, proposal_valid, gt, gt_valid, 0.5)
    num_fg = min(np.sum(labels == 1), int(num_samples * 0.25))
    assert np.sum(valid) == min(len(candidates), num_samples), f"seed={seed}"
    assert np.sum(valid & (classes < num_classes)) == num_fg, f"seed={seed}"
    for box, cls, target, row in zip(boxes[valid], classes[valid], box_targets[valid], gt_index[valid]):
        index = np.flatnonzero(np.all(candidates == box, axis=1))
        assert len(index), f"seed={seed}: sampled box {box} is not a valid candidate"
        k = index[0]
        if cls == num_classes:
            assert labels[k] == 0, f"seed={seed}: background sample with IoU >= 0.5"
        else:
            assert labels[k] == 1 and cls == gt_classes[matched_row[k]], f"seed={seed}"
            # The matched ground truth's row of the padded [G] targets (what mask targets gather).
            assert row == matched_row[k], f"seed={seed}: RoI {box} matched row {row}, reference {matched_row[k]}"
            want = ref.encode(gt[matched_row[k]][None], box[None], WEIGHTS)[0]
            np.testing.assert_allclose(target, want, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")


def test_losses_are_mean_cross_entropy_and_foreground_l1_over_all_samples(rng, seed):
    num_rois, num_classes = 40, 5
    logits = rng.normal(0, 2, (num_rois, num_classes + 1)).astype(np.float32)
    deltas = rng.normal(0, 1, (num_rois, num_classes, 4)).astype(np.float32)
    targets = rng.normal(0, 1, (num_rois, 4)).astype(np.float32)
    classes = rng.integers(0, num_classes + 1, num_rois).astype(np.int32)
    valid = rng.uniform(size=num_rois) < 0.8
    got = roi_box_head.box_head_losses(logits, deltas, classes, valid, targets, smooth_l1_beta=0.0)
    fg = valid & (classes < num_classes)
    l1 = np.abs(deltas[np.flatnonzero(fg), classes[fg]].astype(np.float64) - targets[fg]).sum()
    np.testing.assert_allclose(
        got["loss_cls"], ref.cross_entropy(logits[valid], classes[valid]).mean(), rtol=1e-5, err_msg=f"seed={seed}"
    )
    np.testing.assert_allclose(got["loss_box_reg"], l1 / valid.sum(), rtol=1e-5, err_msg=f"seed={seed}")


def test_detect_equals_fast_rcnn_inference(rng, seed):
    num_rois, num_classes, image_size = 50, 3, np.array([60.0, 64.0], np.float32)
    proposals = random_proposals(rng, num_rois, 64)
    proposal_valid = rng.uniform(size=num_rois) < 0.9
    logits = rng.normal(0, 2, (num_rois, num_classes + 1)).astype(np.float32)
    deltas = rng.normal(0, 1, (num_rois, num_classes, 4)).astype(np.float32)
    detect = functools.partial(roi_box_head.detect, score_threshold=0.05, nms_threshold=0.5, max_detections=40)
    got = jax.jit(detect)(logits, deltas, proposals, proposal_valid, image_size)
    boxes, scores, classes, valid = (np.asarray(got[k]) for k in ("boxes", "scores", "classes", "valid"))
    want_boxes, want_scores, want_classes = ref.fast_rcnn_inference(
        logits[proposal_valid], deltas[proposal_valid], proposals[proposal_valid], image_size, max_detections=40
    )
    count = int(np.sum(valid))
    assert count == len(want_boxes), f"seed={seed}: {count} detections, reference {len(want_boxes)}"
    assert np.all(valid[:count]), f"seed={seed}"
    np.testing.assert_allclose(scores[:count], want_scores, rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(classes[:count], want_classes, err_msg=f"seed={seed}")
    np.testing.assert_allclose(boxes[:count], want_boxes, atol=2e-4, err_msg=f"seed={seed}")


def test_fc_head_is_two_relu_layers_then_class_and_box_predictors(rng, seed):
    pooled = rng.normal(size=(6, 7, 7, 4)).astype(np.float32)
    head = roi_box_head.FCBoxHead(num_classes=3, fc_dim=16, num_fc=2)
    shapes = jax.eval_shape(lambda: head.init(jax.random.key(0), pooled))
    params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes["params"])
    logits, deltas = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, pooled)
    p = jax.tree.map(np.float64, params)
    x = pooled.reshape(6, -1).astype(np.float64)
    for name in ("fc1", "fc2"):
        x = np.maximum(x @ p[name]["kernel"] + p[name]["bias"], 0)
    predictor = p["predictor"]
    np.testing.assert_allclose(
        logits, x @ predictor["cls_score"]["kernel"] + predictor["cls_score"]["bias"], rtol=1e-4, atol=1e-5
    )
    want_deltas = (x @ predictor["bbox_pred"]["kernel"] + predictor["bbox_pred"]["bias"]).reshape(6, 3, 4)
    np.testing.assert_allclose(deltas, want_deltas, rtol=1e-4, atol=1e-5, err_msg=f"seed={seed}")

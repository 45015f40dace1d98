"""RPN head, targets, losses and proposal selection against float64 NumPy (detectron2 semantics)."""

import functools

import jax
import numpy as np
import rcnn_reference as ref
from test_fpn import conv_same

from vision_jax.models.rcnn import rpn


def random_gt(rng, num_valid, num_padding, image_size, crowd=False):
    """Ground truth boxes of 8-40 px inside the image, then zero padding rows."""
    centre = rng.uniform(10, image_size - 10, (num_valid, 2))
    half = rng.uniform(4, 20, (num_valid, 2))
    boxes = np.concatenate([np.clip(centre - half, 0, image_size), np.clip(centre + half, 0, image_size)], 1)
    boxes = np.concatenate([boxes, np.zeros((num_padding, 4))]).astype(np.float32)
    valid = np.arange(num_valid + num_padding) < num_valid
    is_crowd = np.zeros(num_valid + num_padding, bool)
    if crowd:
        is_crowd[num_valid - 1] = True
    return boxes, valid, is_crowd


def test_head_applies_shared_weights_on_every_level_in_anchor_order(rng, seed):
    levels = [rng.normal(size=(2, s, s, 6)).astype(np.float32) for s in (8, 4)]
    head = rpn.RPNHead(num_anchors=3, conv_channels=None)
    shapes = jax.eval_shape(lambda: head.init(jax.random.key(0), levels))
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes["params"])
    logits, deltas = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, levels)
    p = jax.tree.map(np.float64, params)
    for level, x in enumerate(levels):
        hidden = np.maximum(conv_same(x.astype(np.float64), p["conv"]["kernel"], p["conv"]["bias"]), 0)
        want_logits = hidden @ p["objectness"]["kernel"][0, 0] + p["objectness"]["bias"]  # [B, H, W, A]
        want_deltas = hidden @ p["deltas"]["kernel"][0, 0] + p["deltas"]["bias"]  # [B, H, W, A * 4]
        # Row i, column j, anchor a sits at (i * W + j) * A + a, the order of the anchor generator.
        np.testing.assert_allclose(
            logits[level], want_logits.reshape(2, -1), rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}"
        )
        np.testing.assert_allclose(
            deltas[level], want_deltas.reshape(2, -1, 4), rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}"
        )


def test_targets_sample_matched_anchors_like_detectron2(rng, seed):
    image_size, num_samples = 64, 64
    # Ratios 1/4, 1, 4 keep every anchor area exact in float32, so ties are ties in both precisions.
    anchors = np.concatenate(
        [ref.anchors((8, 8), 8, (16, 32), (0.25, 1.0, 4.0)), ref.anchors((4, 4), 16, (48,), (0.25, 1.0, 4.0))]
    )
    gt, valid, crowd = random_gt(rng, 5, 3, image_size, crowd=True)
    targets_fn = functools.partial(
        rpn.rpn_targets, fg_iou_threshold=0.7, bg_iou_threshold=0.3, num_samples=num_samples, positive_fraction=0.5
    )
    labels, targets = jax.jit(targets_fn)(anchors.astype(np.float32), gt, valid, crowd, jax.random.PRNGKey(seed))
    labels, targets = np.asarray(labels), np.asarray(targets)

    real = valid & ~crowd
    matched, want = ref.match(ref.iou(gt[real], anchors), 0.7, 0.3, low_quality=True)
    # Detectron's crowd rule: a would-be background anchor mostly (IoA >= 0.7) inside a crowd box is ignored.
    crowd_box = gt[valid & crowd][0]
    inter = np.prod(
        np.clip(np.minimum(anchors[:, 2:], crowd_box[2:]) - np.maximum(anchors[:, :2], crowd_box[:2]), 0, None), 1
    )
    ioa = inter / np.prod(anchors[:, 2:] - anchors[:, :2], 1)
    want[(want == 0) & (ioa >= 0.7)] = -1

    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    assert set(positives) <= set(np.flatnonzero(want == 1)), f"seed={seed}"
    assert set(negatives) <= set(np.flatnonzero(want == 0)), f"seed={seed}"
    assert len(positives) == min(np.sum(want == 1), num_samples // 2), f"seed={seed}"
    assert len(negatives) == min(np.sum(want == 0), num_samples - len(positives)), f"seed={seed}"
    expected_targets = ref.encode(gt[real][matched[positives]], anchors[positives])
    np.testing.assert_allclose(targets[positives], expected_targets, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")


def test_losses_are_sums_over_samples_divided_by_samples_times_images(rng, seed):
    batch, num_anchors, num_samples = 2, 300, 256
    logits = rng.normal(0, 3, (batch, num_anchors)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, num_anchors, 4)).astype(np.float32)
    targets = rng.normal(0, 1, (batch, num_anchors, 4)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(batch, num_anchors), p=[0.5, 0.4, 0.1])
    for beta in (0.0, 1.0 / 9):
        got = rpn.rpn_losses(logits, deltas, labels, targets, num_samples, smooth_l1_beta=beta)
        sampled, positive = labels >= 0, labels == 1
        bce = ref.binary_cross_entropy(logits, positive)
        diff = np.abs(deltas.astype(np.float64) - targets)
        box = diff if beta == 0 else np.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
        want_cls = bce[sampled].sum() / (num_samples * batch)
        want_loc = box[positive].sum() / (num_samples * batch)
        np.testing.assert_allclose(got["loss_rpn_cls"], want_cls, rtol=1e-5, err_msg=f"seed={seed} beta={beta}")
        np.testing.assert_allclose(got["loss_rpn_loc"], want_loc, rtol=1e-5, err_msg=f"seed={seed} beta={beta}")


def test_proposals_equal_detectron2_find_top_rpn_proposals(rng, seed):
    shapes, strides, sizes = [(16, 16), (8, 8), (4, 4)], (4, 8, 16), ((16,), (32,), (64,))
    level_anchors = [ref.anchors(s, st, sz, (0.5, 1.0, 2.0)) for s, st, sz in zip(shapes, strides, sizes)]
    logits = [rng.normal(0, 2, len(a)).astype(np.float32) for a in level_anchors]
    deltas = [rng.normal(0, 0.3, (len(a), 4)).astype(np.float32) for a in level_anchors]
    image_size = np.array([rng.integers(40, 65), rng.integers(40, 65)], np.float32)  # inside a 64 canvas
    pre, post = 100, 120
    select = jax.jit(
        functools.partial(rpn.select_proposals, pre_nms_topk=pre, post_nms_topk=post, nms_threshold=0.7, min_size=0.0)
    )
    boxes, scores, valid = select(logits, deltas, [a.astype(np.float32) for a in level_anchors], image_size)
    want_boxes, want_scores = ref.find_top_proposals(logits, deltas, level_anchors, image_size, pre, post, 0.7)
    count = int(np.sum(valid))
    assert count == len(want_boxes), f"seed={seed}: {count} proposals, reference {len(want_boxes)}"
    assert np.all(valid[:count]) and not np.any(valid[count:]), f"seed={seed}"
    np.testing.assert_allclose(boxes[:count], want_boxes, atol=2e-4, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(scores[:count], want_scores.astype(np.float32), err_msg=f"seed={seed}")
    assert np.all(np.isneginf(scores[count:])) and np.all(np.asarray(boxes[count:]) == 0), f"seed={seed}"

"""vision_jax.ops.nms against a float64 NumPy greedy NMS and tf.image.non_max_suppression."""
from __future__ import annotations

import functools
import re

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

# `vision_jax.ops.nms` is the function once the package re-exports it, so import by name.
from vision_jax.ops.nms import batched_nms, nms

# Tests use small tiles so that a few hundred boxes span many tiles and several ordered prefixes
# (the first prefix is 8 tiles, then 4x), exercising every path of the tiled algorithm.
nms_jit = jax.jit(nms, static_argnames=("max_output_size", "tile_size"))
batched_nms_jit = jax.jit(batched_nms, static_argnames=("max_output_size", "tile_size"))


# ----------------------------------------------------------------------------- references
def pairwise_iou64(boxes):
    b = boxes.astype(np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ref_nms(boxes, scores, iou_threshold, max_output_size, score_threshold=-np.inf, classes=None):
    """Greedy NMS in float64: visit by score desc (stable: lower index first on ties)."""
    scores = scores.astype(np.float64)
    iou = pairwise_iou64(boxes)
    order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    kept = []
    for i in order:
        if not scores[i] > score_threshold:  # NaN and -inf never qualify
            continue
        same_class = np.ones(len(kept), bool) if classes is None else classes[kept] == classes[i]
        if np.any((iou[i, kept] > iou_threshold) & same_class):
            continue
        kept.append(i)
        if len(kept) == max_output_size:
            break
    return np.asarray(kept, np.int64)


def tf_nms(boxes, scores, iou_threshold, max_output_size, score_threshold=-np.inf):
    """TF's op takes (y1, x1, y2, x2); same strict '> threshold' rules, same tie order."""
    selected = tf.image.non_max_suppression(tf.constant(boxes[:, [1, 0, 3, 2]]), tf.constant(scores),
                                            max_output_size, iou_threshold,
                                            score_threshold=float(score_threshold))
    return selected.numpy().astype(np.int64)


def clustered_boxes(rng, num_boxes, image_size=300.0, num_objects=None):
    """RPN-like boxes: jittered copies around a few objects, so suppression chains are long."""
    num_objects = num_objects or max(1, num_boxes // 20)
    centres = rng.uniform(0, image_size, (num_objects, 2))
    sizes = rng.uniform(10, image_size / 3, (num_objects, 2))
    which = rng.integers(0, num_objects, num_boxes)
    centre = centres[which] + rng.normal(0, 0.12, (num_boxes, 2)) * sizes[which]
    size = sizes[which] * np.exp(rng.normal(0, 0.15, (num_boxes, 2)))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


def draw_case(rng, box_sampler, num_boxes, iou_threshold, inverted=True):
    """Boxes and scores with no IoU within 1e-5 of the threshold (float32 vs float64 ambiguity)."""
    while True:
        if rng.uniform() < 0.5:
            boxes = clustered_boxes(rng, num_boxes)
        else:
            boxes = box_sampler(rng, num_boxes, image_size=300.0, allow_inverted=inverted)
        iou = pairwise_iou64(boxes)
        if np.all(np.abs(iou - iou_threshold) > 1e-5):
            break
    scores = rng.uniform(size=num_boxes).astype(np.float32)
    if rng.uniform() < 0.5:
        scores = np.round(scores * 10) / 10  # many exact ties, broken by index
    return boxes, scores.astype(np.float32)


def kept(indices, num_valid):
    indices, num_valid = np.asarray(indices), int(num_valid)
    assert np.all(indices[num_valid:] == -1), "padding must be -1"
    return indices[:num_valid]


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("num_boxes,max_output_size,tile_size", [(40, 15, 8), (300, 100, 16),
                                                                 (300, 400, 32)])
def test_nms_equals_float64_greedy_and_tensorflow(num_boxes, max_output_size, tile_size, rng, seed,
                                                  box_sampler):
    for case in range(110):
        iou_threshold = float(rng.choice([0.3, 0.5, 0.7, rng.uniform(0.05, 0.95)]))
        score_threshold = -np.inf if case % 3 else float(rng.uniform(0, 0.5))
        boxes, scores = draw_case(rng, box_sampler, num_boxes, iou_threshold, inverted=False)
        indices, num_valid = nms_jit(boxes, scores, iou_threshold, score_threshold=score_threshold,
                                     max_output_size=max_output_size, tile_size=tile_size)
        ours = kept(indices, num_valid)
        msg = f"case {case} thr={iou_threshold} seed={seed}"
        np.testing.assert_array_equal(ours, ref_nms(boxes, scores, iou_threshold, max_output_size,
                                                    score_threshold), err_msg=f"numpy {msg}")
        np.testing.assert_array_equal(ours, tf_nms(boxes, scores, iou_threshold, max_output_size,
                                                   score_threshold), err_msg=f"tensorflow {msg}")


def test_nms_at_rpn_scale_with_default_tiles_equals_tensorflow(rng, seed):
    """3000 clustered boxes, default tile size, max_output_size 1000: several prefixes of work."""
    for case in range(3):
        boxes = clustered_boxes(rng, 3000, image_size=800.0, num_objects=40)
        scores = rng.uniform(size=3000).astype(np.float32)
        indices, num_valid = nms_jit(boxes, scores, 0.7, max_output_size=1000)
        np.testing.assert_array_equal(kept(indices, num_valid), tf_nms(boxes, scores, 0.7, 1000),
                                      err_msg=f"case {case} seed={seed}")


def test_nms_with_degenerate_boxes_follows_the_documented_iou(rng, seed, box_sampler):
    """Empty and inverted boxes have IoU 0: never suppressed, never suppressing (NumPy only: TF
    reorders inverted corners)."""
    for case in range(100):  # the (40, 15, 8) configuration above: no new compilation
        boxes, scores = draw_case(rng, box_sampler, 40, 0.5)
        empty = rng.uniform(size=40) < 0.3
        boxes[empty] = box_sampler(rng, int(empty.sum()), degenerate_fraction=1.0)
        indices, num_valid = nms_jit(boxes, scores, 0.5, max_output_size=15, tile_size=8)
        np.testing.assert_array_equal(kept(indices, num_valid), ref_nms(boxes, scores, 0.5, 15),
                                      err_msg=f"case {case} seed={seed}")


def test_batched_nms_equals_per_class_greedy_merged_by_score(rng, seed, box_sampler):
    for case in range(100):
        boxes, scores = draw_case(rng, box_sampler, 120, 0.5, inverted=False)
        classes = rng.integers(0, 4, 120).astype(np.int32)
        indices, num_valid = batched_nms_jit(boxes, scores, classes, 0.5, max_output_size=30,
                                             tile_size=16)
        per_class = np.concatenate([np.flatnonzero(classes == c)[ref_nms(boxes[classes == c],
                                                                         scores[classes == c], 0.5, 120)]
                                    for c in range(4)])
        merged = per_class[np.lexsort((per_class, -scores[per_class]))][:30]
        np.testing.assert_array_equal(kept(indices, num_valid), merged, err_msg=f"case {case} seed={seed}")
        if case < 10:  # TensorFlow per class, merged the same way
            tf_per_class = np.concatenate([np.flatnonzero(classes == c)[tf_nms(boxes[classes == c],
                                                                               scores[classes == c], 0.5, 120)]
                                           for c in range(4)])
            tf_merged = tf_per_class[np.lexsort((tf_per_class, -scores[tf_per_class]))][:30]
            np.testing.assert_array_equal(kept(indices, num_valid), tf_merged, err_msg=f"tf seed={seed}")


def test_nms_rejects_bad_arguments():
    with pytest.raises(ValueError, match="boxes must be"):
        nms(jnp.zeros((4, 5)), jnp.zeros((4,)), 0.5, 3)
    with pytest.raises(ValueError, match="scores must be"):
        nms(jnp.zeros((4, 4)), jnp.zeros((5,)), 0.5, 3)
    with pytest.raises(ValueError, match="max_output_size"):
        nms(jnp.zeros((4, 4)), jnp.zeros((4,)), 0.5, 2.5)
    with pytest.raises(ValueError, match="classes must be"):
        batched_nms(jnp.zeros((4, 4)), jnp.zeros((4,)), jnp.zeros((3,)), 0.5, 3)


def test_nms_of_no_boxes_returns_only_padding():
    indices, num_valid = nms(jnp.zeros((0, 4)), jnp.zeros((0,)), 0.5, 5)
    assert int(num_valid) == 0 and np.all(np.asarray(indices) == -1)


# ----------------------------------------------------------------------------- bad inputs
special_scores = st.one_of(st.floats(-1, 1, width=32), st.sampled_from([float("nan"), float("inf"),
                                                                         float("-inf"), 0.0, -0.0]))
coordinates = st.one_of(st.floats(-50, 150, width=32), st.sampled_from([0.0, 10.0, 100.0]))


@jax.jit
def nms_small(boxes, scores, score_threshold):
    return nms(boxes, scores, 0.5, max_output_size=12, score_threshold=score_threshold,
                    tile_size=4)


@settings(max_examples=60, deadline=None)
@given(boxes=hnp.arrays(np.float32, (12, 4), elements=coordinates),
       scores=hnp.arrays(np.float32, (12,), elements=special_scores),
       score_threshold=st.sampled_from([-np.inf, 0.0, 0.5]))
def test_nms_with_nan_inf_scores_and_arbitrary_boxes_follows_the_documented_rule(boxes, scores,
                                                                                  score_threshold):
    """NaN / -inf scores are never kept, +inf first; all-NaN input keeps nothing; no crash."""
    iou = pairwise_iou64(boxes)
    if np.any(np.abs(iou - 0.5) <= 1e-5):
        return  # float32 vs float64 at the threshold is out of scope
    indices, num_valid = nms_small(boxes, scores, score_threshold)
    ours = kept(indices, num_valid)
    np.testing.assert_array_equal(ours, ref_nms(boxes, scores, 0.5, 12, score_threshold))
    assert not np.any(np.isnan(scores[ours]))


# ----------------------------------------------------------------------------- jit, vmap, memory
def test_nms_traces_once_per_shape_and_vmap_equals_loop(rng, seed, box_sampler):
    traces = []

    def counted(boxes, scores, classes):
        traces.append(1)
        return batched_nms(boxes, scores, classes, 0.5, max_output_size=30, tile_size=16)

    jitted = jax.jit(counted)
    single = functools.partial(batched_nms_jit, iou_threshold=0.5, max_output_size=30, tile_size=16)
    cases = [draw_case(rng, box_sampler, 120, 0.5) for _ in range(4)]
    classes = rng.integers(0, 3, (4, 120)).astype(np.int32)
    for (boxes, scores), cls in zip(cases[:2], classes[:2]):
        jitted(boxes, scores, cls)
    assert len(traces) == 1, f"traced {len(traces)} times for one shape"
    batch_indices, batch_num = jax.jit(jax.vmap(counted))(np.stack([c[0] for c in cases]),
                                                          np.stack([c[1] for c in cases]), classes)
    for i, ((boxes, scores), cls) in enumerate(zip(cases, classes)):
        indices, num_valid = single(boxes, scores, cls)
        np.testing.assert_array_equal(batch_indices[i], indices, err_msg=f"image {i} seed={seed}")
        assert int(batch_num[i]) == int(num_valid)


def test_nms_never_materialises_an_n_by_n_matrix():
    """At RPN size the compiled program holds no buffer anywhere near N x N."""
    num_boxes = 20000
    lowered = jax.jit(lambda b, s: nms(b, s, 0.7, max_output_size=1000)).lower(
        jax.ShapeDtypeStruct((num_boxes, 4), jnp.float32), jax.ShapeDtypeStruct((num_boxes,), jnp.float32))
    largest = 0
    for dims in re.findall(r"tensor<([0-9x]+)x(?:f32|i32|i1|f64|i64)>", lowered.as_text()):
        largest = max(largest, int(np.prod([int(d) for d in dims.split("x")])))
    assert 0 < largest <= 4 * num_boxes * 8, f"largest intermediate has {largest} elements"

"""vision_jax.ops.matching against NumPy versions of detectron2's Matcher and subsample_labels."""
from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vision_jax.ops import matching

NUM_GT, NUM_ANCHORS = 7, 60


# ----------------------------------------------------------------------------- NumPy references
def ref_matcher(iou, valid, fg_threshold, bg_threshold, allow_low_quality):
    """detectron2 Matcher(thresholds=[bg, fg], labels=[0, -1, 1]) restricted to valid rows.

    Documented deviation kept here: a gt whose best IoU is 0 makes no low-quality match.
    """
    num_anchors = iou.shape[1]
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return np.zeros(num_anchors, np.int64), np.zeros(num_anchors, np.int64)
    quality = iou[rows]
    matched_vals = quality.max(axis=0)
    matches = rows[quality.argmax(axis=0)]
    labels = np.ones(num_anchors, np.int64)
    for label, low, high in zip([0, -1, 1], [-np.inf, bg_threshold, fg_threshold],
                                [bg_threshold, fg_threshold, np.inf]):
        labels[(matched_vals >= low) & (matched_vals < high)] = label
    if allow_low_quality:
        for row in quality:
            if row.max() > 0:
                labels[row == row.max()] = 1
    return matches, labels


def ref_iou_ioa(boxes1, boxes2):
    b1, b2 = boxes1[:, None].astype(np.float64), boxes2[None].astype(np.float64)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    w = np.clip(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0, None)
    h = np.clip(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0, None)
    inter = w * h
    union = area(b1) + area(b2) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    area2 = np.broadcast_to(area(b2), inter.shape)
    ioa = np.where(area2 > 0, inter / np.where(area2 > 0, area2, 1), 0)
    return iou, ioa


def random_problem(rng, box_sampler):
    """Anchors and gt that overlap often: gt are jittered copies of some anchors."""
    anchors = box_sampler(rng, NUM_ANCHORS, image_size=100.0, degenerate_fraction=0.1)
    picks = rng.integers(0, NUM_ANCHORS, NUM_GT)
    gt = anchors[picks] + rng.normal(0, 4, (NUM_GT, 4)).astype(np.float32)
    gt[rng.uniform(size=NUM_GT) < 0.15] = box_sampler(rng, 1, image_size=100.0, degenerate_fraction=1.0)
    valid = rng.uniform(size=NUM_GT) < 0.8
    if rng.uniform() < 0.1:
        valid[:] = False  # all padding
    crowd = rng.uniform(size=NUM_GT) < 0.2
    return gt.astype(np.float32), valid, anchors, crowd


match_iou_jit = jax.jit(matching.match_iou, static_argnums=(2, 3, 4))
match_boxes_jit = jax.jit(matching.match_boxes, static_argnums=(4, 5, 6, 7))  # thresholds


@pytest.mark.parametrize("thresholds,low_quality", [((0.3, 0.7), True), ((0.5, 0.5), False),
                                                     ((0.375, 0.625), True)])
def test_match_iou_equals_detectron2_matcher(thresholds, low_quality, rng, seed):
    bg, fg = thresholds
    for case in range(110):
        iou = rng.uniform(0, 1, (NUM_GT, NUM_ANCHORS)) ** 2
        if case % 3 == 0:
            iou = np.round(iou * 8) / 8  # exact ties and IoU exactly on the thresholds
        iou = iou.astype(np.float32)
        valid = rng.uniform(size=NUM_GT) < (0.0 if case % 17 == 0 else 0.8)
        matches, labels = match_iou_jit(iou, valid, fg, bg, low_quality)
        ref_matches, ref_labels = ref_matcher(iou, valid, fg, bg, low_quality)
        np.testing.assert_array_equal(labels, ref_labels, err_msg=f"case {case} seed={seed}")
        np.testing.assert_array_equal(matches, ref_matches, err_msg=f"case {case} seed={seed}")


def test_match_boxes_handles_padding_and_crowd_like_the_reference(rng, seed, box_sampler):
    crowd_threshold = 0.7
    for case in range(110):
        gt, valid, anchors, crowd = random_problem(rng, box_sampler)
        matches, labels = match_boxes_jit(gt, valid, anchors, crowd, 0.7, 0.3, True, crowd_threshold)
        iou, ioa = ref_iou_ioa(gt, anchors)
        ref_matches, ref_labels = ref_matcher(iou, valid & ~crowd, 0.7, 0.3, True)
        crowd_cover = np.max(np.where((valid & crowd)[:, None], ioa, 0), axis=0)
        ref_labels = np.where((ref_labels == 0) & (crowd_cover >= crowd_threshold), -1, ref_labels)
        np.testing.assert_array_equal(labels, ref_labels, err_msg=f"case {case} seed={seed}")
        fg = ref_labels == 1
        np.testing.assert_array_equal(np.asarray(matches)[fg], ref_matches[fg],
                                      err_msg=f"case {case} seed={seed}")
        assert np.all((valid & ~crowd)[np.asarray(matches)[fg]]), f"padding/crowd matched, seed={seed}"


def test_match_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bg_threshold"):
        matching.match_iou(jnp.zeros((2, 3)), None, 0.3, 0.7)
    with pytest.raises(ValueError, match="gt_valid"):
        matching.match_iou(jnp.zeros((2, 3)), jnp.ones((3,), bool))
    with pytest.raises(ValueError, match="positive_fraction"):
        matching.sample_balanced(jnp.zeros((5,), jnp.int32), jax.random.key(0), 4, 1.5)


@settings(max_examples=40, deadline=None)
@given(iou=hnp.arrays(np.float32, (NUM_GT, NUM_ANCHORS),
                      elements=st.one_of(st.floats(0, 1, width=32), st.just(float("nan")))),
       valid=hnp.arrays(bool, (NUM_GT,)))
def test_match_iou_with_nan_and_padding_never_crashes_and_never_matches_padding(iou, valid):
    """NaN IoU counts as no overlap (documented); labels stay in {1, 0, -1}."""
    matches, labels = match_iou_jit(iou, valid, 0.7, 0.3, True)
    matches, labels = np.asarray(matches), np.asarray(labels)
    assert set(np.unique(labels)) <= {-1, 0, 1}
    ref_matches, ref_labels = ref_matcher(np.nan_to_num(iou, nan=-1.0), valid, 0.7, 0.3, True)
    np.testing.assert_array_equal(labels, ref_labels)
    if valid.any():
        assert np.all(valid[matches[labels == 1]])
    else:
        assert np.all(labels == 0)


# ----------------------------------------------------------------------------- sampler
sample_jit = jax.jit(matching.sample_balanced, static_argnums=(2, 3))
masks_jit = jax.jit(matching.sample_balanced_masks, static_argnums=(2, 3))


def random_labels(rng, num_labels):
    probabilities = rng.dirichlet([1, 1, 1])
    return rng.choice([1, 0, -1], num_labels, p=probabilities).astype(np.int32)


@pytest.mark.parametrize("num_samples,fraction", [(32, 0.5), (64, 0.25), (16, 1.0), (200, 0.5)])
def test_sample_balanced_counts_and_eligibility_match_subsample_labels(num_samples, fraction, rng,
                                                                       seed):
    for case in range(100):
        labels = random_labels(rng, 150)
        key = jax.random.key(int(rng.integers(2 ** 31)))
        indices, valid = map(np.asarray, sample_jit(labels, key, num_samples, fraction))
        # detectron2 subsample_labels: p = min(#pos, int(S f)), n = min(#neg, S - p).
        num_pos = min(int(np.sum(labels == 1)), int(num_samples * fraction))
        num_neg = min(int(np.sum(labels == 0)), num_samples - num_pos)
        msg = f"case {case} seed={seed}"
        assert indices.shape == (num_samples,) and valid.shape == (num_samples,), msg
        np.testing.assert_array_equal(valid, np.arange(num_samples) < num_pos + num_neg, err_msg=msg)
        assert np.all(labels[indices[:num_pos]] == 1), msg
        assert np.all(labels[indices[num_pos:num_pos + num_neg]] == 0), msg
        assert np.all(indices[~valid] == -1), msg
        assert len(set(indices[valid].tolist())) == num_pos + num_neg, f"duplicates, {msg}"
        pos_mask, neg_mask = map(np.asarray, masks_jit(labels, key, num_samples, fraction))
        np.testing.assert_array_equal(np.flatnonzero(pos_mask), np.sort(indices[:num_pos]), err_msg=msg)
        np.testing.assert_array_equal(np.flatnonzero(neg_mask),
                                      np.sort(indices[num_pos:num_pos + num_neg]), err_msg=msg)


def test_sample_balanced_is_uniform_over_eligible_elements(rng, seed):
    """Every positive is drawn with probability p / #pos (as randperm in subsample_labels)."""
    labels = random_labels(rng, 120)
    num_keys, num_samples, fraction = 3000, 20, 0.5
    keys = jax.random.split(jax.random.key(int(rng.integers(2 ** 31))), num_keys)
    pos_masks, neg_masks = jax.jit(jax.vmap(
        lambda k: matching.sample_balanced_masks(labels, k, num_samples, fraction)))(keys)
    for masks, eligible, count in ((pos_masks, labels == 1, None), (neg_masks, labels == 0, None)):
        frequency = np.asarray(masks).mean(axis=0)
        chosen = np.asarray(masks).sum(axis=1)
        assert np.all(chosen == chosen[0]), f"sample size varies, seed={seed}"
        if not eligible.any():
            continue
        expected = chosen[0] / eligible.sum()
        sigma = np.sqrt(max(expected * (1 - expected), 1e-12) / num_keys)
        assert np.all(frequency[~eligible] == 0), f"ineligible element sampled, seed={seed}"
        assert np.all(np.abs(frequency[eligible] - expected) <= 5 * sigma + 1e-9), \
            f"non-uniform sampling, max dev {np.abs(frequency[eligible] - expected).max():.3f}, seed={seed}"


# ----------------------------------------------------------------------------- jit and vmap
def test_matching_and_sampling_trace_once_and_vmap_equals_loop(rng, seed, box_sampler):
    traces = []

    def label_and_sample(gt, valid, anchors, crowd, key):
        traces.append(1)
        matches, labels = matching.match_boxes(gt, valid, anchors, crowd)
        indices, sampled_valid = matching.sample_balanced(labels, key, 16, 0.5)
        return matches, labels, indices, sampled_valid

    jitted = jax.jit(label_and_sample)
    problems = [random_problem(rng, box_sampler) for _ in range(4)]
    keys = jax.random.split(jax.random.key(int(rng.integers(2 ** 31))), 4)
    single = jax.jit(lambda *args: label_and_sample(*args))
    looped = [single(*problem, key) for problem, key in zip(problems, keys)]
    traces.clear()
    for problem, key in zip(problems[:2], keys[:2]):
        jitted(*problem, key)
    assert len(traces) == 1, f"traced {len(traces)} times for one shape"
    stacked = [np.stack([p[i] for p in problems]) for i in range(4)]
    batched = jax.jit(jax.vmap(label_and_sample))(*stacked, keys)
    for i, name in enumerate(["matches", "labels", "indices", "valid"]):
        np.testing.assert_array_equal(batched[i], np.stack([np.asarray(out[i]) for out in looped]),
                                      err_msg=f"{name} seed={seed}")

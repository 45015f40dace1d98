"""vision_jax.ops.multiclass_detections, the one detection post-processor, against a float64 NumPy
reference (clip, drop, cut, per-class greedy NMS, top K) in its three modes: class-specific boxes
with a valid mask (R-CNN), topk_per_class (SSD), pre_nms_topk (YOLO); fresh random inputs, the seed
printed by conftest."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.ops import foreground_scores, multiclass_detections

KEYS = ("boxes", "scores", "classes", "valid")


# ----------------------------------------------------------------------------- reference
def iou64(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_detections(boxes, scores, height, width, score_threshold, nms_threshold, max_detections,
                         valid=None, pre_nms_topk=None, topk_per_class=None):  # fmt: skip
    """The module docstring's rules, written with loops in float64.
    -> list of (box [4], score, class) by decreasing score (ties: lower flat index n * C + c)."""
    scores = np.asarray(scores, np.float64)
    num_boxes, num_classes = scores.shape
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim == 2:
        boxes = np.repeat(boxes[:, None, :], num_classes, axis=1)
    boxes = boxes.copy()
    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0.0, width)  # NaN stays NaN, +-inf goes to the border
    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0.0, height)
    candidates = []  # (score, flat index, box, class)
    for n in range(num_boxes):
        for c in range(num_classes):
            score, box = scores[n, c], boxes[n, c]
            usable = np.isfinite(score) and np.all(np.isfinite(box)) and score > score_threshold
            if usable and (valid is None or valid[n]):
                candidates.append((score, n * num_classes + c, box, c))
    candidates.sort(key=lambda item: (-item[0], item[1]))
    if topk_per_class is not None:
        per_class = {}
        for item in candidates:
            per_class.setdefault(item[3], []).append(item)
        candidates = [item for items in per_class.values() for item in items[:topk_per_class]]
        candidates.sort(key=lambda item: (-item[0], item[1]))
    if pre_nms_topk is not None:
        candidates = candidates[:pre_nms_topk]
    kept = []
    for score, _, box, c in candidates:
        if all(kc != c or iou64(box, kb) <= nms_threshold for kb, _, kc in kept):
            kept.append((box, score, c))
        if len(kept) == max_detections:
            break
    return kept


def assert_matches(got, want, seed, where=""):
    boxes, scores, classes, valid = (np.asarray(got[key]) for key in KEYS)
    count = int(valid.sum())
    message = f"seed={seed} {where}"
    assert count == len(want), f"{message}: {count} detections, reference {len(want)}"
    assert valid[:count].all() and not valid[count:].any(), message
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and classes.dtype == np.int32, message
    if want:
        np.testing.assert_allclose(scores[:count], [w[1] for w in want], rtol=1e-6, err_msg=message)
        np.testing.assert_array_equal(classes[:count], [w[2] for w in want], err_msg=message)
        np.testing.assert_allclose(boxes[:count], np.stack([w[0] for w in want]), atol=1e-4, err_msg=message)
    assert not boxes[count:].any() and not scores[count:].any() and not classes[count:].any(), message


# ----------------------------------------------------------------------------- random inputs
def clustered_boxes(rng, num_boxes, height, width, extra_shape=()):
    """[num_boxes, *extra_shape, 4] float32 xyxy: jittered copies of a few objects (so NMS has work),
    some crossing the image border (clipped), a few inverted or empty."""
    objects = rng.uniform(-10, max(height, width) + 10, size=(6, 2))
    centres = objects[rng.integers(0, 6, (num_boxes, *extra_shape))] + rng.normal(0, 4, (num_boxes, *extra_shape, 2))
    sizes = rng.uniform(4, 36, size=(num_boxes, *extra_shape, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1)
    odd = rng.random((num_boxes, *extra_shape)) < 0.05
    boxes[odd] = boxes[odd][..., [2, 3, 0, 1]]  # inverted: area 0 after any clipping, IoU 0
    return boxes.astype(np.float32)


def random_scores(rng, num_boxes, num_classes):
    return (rng.random((num_boxes, num_classes)) ** 2).astype(np.float32)


SIZES = np.asarray([[60.0, 64.0], [48.0, 40.0]], np.float32)  # two images, (height, width)


def run_batch(boxes, scores, sizes, valid=None, **options):
    """Two images through jit(vmap(...)), thresholds traced as the models pass them."""

    def one(boxes, scores, size, valid, score_threshold, nms_threshold):
        return multiclass_detections(
            boxes, scores, size, score_threshold=score_threshold, nms_threshold=nms_threshold, valid=valid, **options
        )

    in_axes = (0, 0, 0, None if valid is None else 0, None, None)
    return jax.jit(jax.vmap(one, in_axes=in_axes))(boxes, scores, sizes, valid, 0.05, 0.45)


@pytest.mark.parametrize("with_valid", [True, False])
def test_class_specific_boxes_with_valid_rows_match_numpy(rng, seed, with_valid):
    """R-CNN: one regressed box per (row, class), padding proposals masked out, no cut before NMS."""
    num_boxes, num_classes = 70, 4
    boxes = np.stack([clustered_boxes(rng, num_boxes, 60, 64, (num_classes,)) for _ in range(2)])
    scores = np.stack([random_scores(rng, num_boxes, num_classes) for _ in range(2)])
    valid = rng.random((2, num_boxes)) < 0.8 if with_valid else None
    out = run_batch(boxes, scores, SIZES, valid, max_detections=40)
    for b in range(2):
        want = reference_detections(
            boxes[b], scores[b], *SIZES[b], 0.05, 0.45, 40, valid=None if valid is None else valid[b]
        )
        assert len(want) >= 10, f"seed={seed}: only {len(want)} reference detections"
        assert_matches({k: v[b] for k, v in out.items()}, want, seed, f"image {b}")


@pytest.mark.parametrize("topk_per_class", [5, 12, 500])
def test_topk_per_class_matches_numpy(rng, seed, topk_per_class):
    """SSD: the k best boxes of each class are the candidates (k > N keeps them all)."""
    num_boxes, num_classes = 80, 3
    boxes = np.stack([clustered_boxes(rng, num_boxes, 60, 64) for _ in range(2)])
    scores = np.stack([random_scores(rng, num_boxes, num_classes) for _ in range(2)])
    out = run_batch(boxes, scores, SIZES, max_detections=25, topk_per_class=topk_per_class)
    for b in range(2):
        want = reference_detections(boxes[b], scores[b], *SIZES[b], 0.05, 0.45, 25, topk_per_class=topk_per_class)
        assert len(want) >= min(5, topk_per_class), f"seed={seed}: only {len(want)} reference detections"
        assert_matches({k: v[b] for k, v in out.items()}, want, seed, f"image {b}")


@pytest.mark.parametrize("pre_nms_topk", [7, 60, 10_000])
def test_pre_nms_topk_matches_numpy(rng, seed, pre_nms_topk):
    """YOLO: the k best (box, class) pairs overall are the candidates (k > N x C keeps them all)."""
    num_boxes, num_classes = 80, 3
    boxes = np.stack([clustered_boxes(rng, num_boxes, 60, 64) for _ in range(2)])
    scores = np.stack([random_scores(rng, num_boxes, num_classes) for _ in range(2)])
    out = run_batch(boxes, scores, SIZES, max_detections=25, pre_nms_topk=pre_nms_topk)
    for b in range(2):
        want = reference_detections(boxes[b], scores[b], *SIZES[b], 0.05, 0.45, 25, pre_nms_topk=pre_nms_topk)
        assert len(want) >= min(5, pre_nms_topk), f"seed={seed}: only {len(want)} reference detections"
        assert_matches({k: v[b] for k, v in out.items()}, want, seed, f"image {b}")


# ----------------------------------------------------------------------------- edge cases
MODES = {
    "all_pairs": {},
    "topk_per_class": {"topk_per_class": 4},
    "pre_nms_topk": {"pre_nms_topk": 6},
}


def detect(boxes, scores, size=(60.0, 64.0), max_detections=10, **options):
    fn = functools.partial(
        multiclass_detections, score_threshold=0.05, nms_threshold=0.45, max_detections=max_detections, **options
    )
    return jax.jit(fn)(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(size))


@pytest.mark.parametrize("mode", MODES)
def test_scores_at_or_below_the_threshold_give_only_padding(rng, mode):
    boxes = clustered_boxes(rng, 20, 60, 64)
    scores = np.full((20, 3), 0.05, np.float32)  # == threshold: dropped (strictly greater is kept)
    scores[::2] = rng.uniform(0, 0.05, (10, 3))
    out = detect(boxes, scores, **MODES[mode])
    assert not np.asarray(out["valid"]).any()
    for key in ("boxes", "scores", "classes"):
        assert not np.asarray(out[key]).any(), key


@pytest.mark.parametrize("mode", MODES)
def test_non_finite_scores_and_boxes_are_dropped_after_clipping(rng, seed, mode):
    """A NaN or infinite score, or a NaN coordinate, drops its pair; an infinite coordinate is
    clipped to the image border first (step 1), so that box stays."""
    boxes = np.array(
        [[2, 2, 20, 20], [30, 30, 50, 50], [np.nan, 5, 15, 15], [40, 2, np.inf, 20], [5, 40, 20, -np.inf]], np.float32
    )
    scores = np.array([[0.9, np.nan], [np.inf, 0.8], [0.7, 0.6], [0.5, -np.inf], [0.4, 0.3]], np.float32)
    out = detect(boxes, scores, **MODES[mode])
    want = reference_detections(boxes, scores, 60.0, 64.0, 0.05, 0.45, 10, **MODES[mode])
    assert [w[1] for w in want] == pytest.approx([0.9, 0.8, 0.5, 0.4, 0.3])
    assert_matches(out, want, seed, mode)
    np.testing.assert_array_equal(np.asarray(out["boxes"])[2], [40, 2, 64, 20])  # +inf x2 -> width
    np.testing.assert_array_equal(np.asarray(out["boxes"])[3], [5, 40, 20, 0])  # -inf y2 -> 0: an empty box


@pytest.mark.parametrize("mode", MODES)
def test_fewer_candidates_than_max_detections_pads_the_rest(rng, seed, mode):
    boxes = clustered_boxes(rng, 3, 60, 64)
    scores = rng.uniform(0.1, 1.0, (3, 2)).astype(np.float32)
    out = detect(boxes, scores, max_detections=50, **MODES[mode])
    assert out["boxes"].shape == (50, 4) and out["valid"].shape == (50,)
    want = reference_detections(boxes, scores, 60.0, 64.0, 0.05, 0.45, 50, **MODES[mode])
    assert_matches(out, want, seed, mode)


TIE_CASES = {  # mode options -> (box index, class) of the detections
    "all_pairs": ({}, [(0, 0), (1, 0), (4, 0), (5, 0)]),
    "topk_per_class": ({"topk_per_class": 5}, [(0, 0), (1, 0), (4, 0), (0, 1)]),
    "pre_nms_topk": ({"pre_nms_topk": 5}, [(0, 0), (1, 0), (4, 0)]),
}


@pytest.mark.parametrize("mode", TIE_CASES)
def test_equal_scores_go_to_the_lower_index(seed, mode):
    """Six boxes, every class-0 score 0.5, every class-1 score 0.1; boxes 2 and 3 duplicate 0 and 1.
    Equal scores are visited lower index first, so 0 and 1 are kept and their duplicates
    suppressed; a cut at 5 keeps the lower flat indices n * C + c: topk_per_class drops box 5 of
    class 0 (box 0 of class 1 comes next), pre_nms_topk keeps class 0's boxes 0-4 only."""
    boxes = np.array(
        [[0, 0, 10, 10], [30, 30, 40, 40], [0, 0, 10, 10], [30, 30, 40, 40], [50, 0, 60, 10], [50, 20, 60, 30]],
        np.float32,
    )
    scores = np.tile(np.array([[0.5, 0.1]], np.float32), (6, 1))
    options, expected = TIE_CASES[mode]
    out = detect(boxes, scores, max_detections=4, **options)
    assert_matches(out, reference_detections(boxes, scores, 60.0, 64.0, 0.05, 0.45, 4, **options), seed, mode)
    count = len(expected)
    np.testing.assert_array_equal(np.asarray(out["boxes"])[:count], boxes[[n for n, _ in expected]])
    np.testing.assert_array_equal(np.asarray(out["classes"])[:count], [c for _, c in expected])


def test_rejects_misshapen_inputs_and_two_cuts():
    boxes, scores = np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="not both"):
        detect(boxes, scores, pre_nms_topk=2, topk_per_class=2)
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\] or \[N, C, 4\]"):
        detect(np.zeros((4, 3, 4), np.float32), scores)
    with pytest.raises(ValueError, match=r"scores must be \[N, C\]"):
        detect(boxes, scores[None])


def test_traces_once_per_shape(rng):
    traces = []

    def counted(boxes, scores, size, score_threshold):
        traces.append(1)
        return multiclass_detections(
            boxes, scores, size, score_threshold=score_threshold, nms_threshold=0.5, max_detections=8, pre_nms_topk=20
        )

    jitted = jax.jit(counted)
    for threshold, size in ((0.1, (60.0, 64.0)), (0.3, (40.0, 50.0)), (0.0, (64.0, 64.0))):
        jitted(clustered_boxes(rng, 30, 60, 64), random_scores(rng, 30, 3), np.asarray(size, np.float32), threshold)
    assert len(traces) == 1, f"traced {len(traces)} times for one shape"
    jitted(clustered_boxes(rng, 31, 60, 64), random_scores(rng, 31, 3), np.asarray((60.0, 64.0), np.float32), 0.1)
    assert len(traces) == 2


def test_foreground_scores_drop_the_last_background_column(rng):
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    probabilities = np.exp(logits.astype(np.float64))
    probabilities /= probabilities.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(foreground_scores(logits)), probabilities[:, :3], rtol=1e-5)

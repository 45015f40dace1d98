"""The detection preprocess against float64 NumPy references of its rules (resize, flip, clip, pad)."""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data import detection_inputs
from vision_jax.data.dataset_info import DatasetInfo

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def detection_config(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict({"data": {}})
    detection_inputs.add_detection_data_defaults(c)
    c.data.update(overrides)
    return c


def info(has=("boxes",)) -> DatasetInfo:
    return DatasetInfo(name="test", num_classes=7, class_names=tuple("abcdefg"), num_examples={"train": 1},
                       image_shape=(None, None, 3), has=frozenset(has))


def run_many(fn, examples: list[dict], seeds: list) -> list[dict]:
    """fn applied inside one tf.data map (graph mode, as the pipeline runs it, traced once)."""
    signature = {k: tf.TensorSpec([None] * np.ndim(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in examples[0].items()}
    signature = ({**signature}, tf.TensorSpec([2], tf.int64))
    ds = tf.data.Dataset.from_generator(lambda: zip(examples, (np.asarray(s, np.int64) for s in seeds)), output_signature=signature)
    return list(ds.map(fn).as_numpy_iterator())


def run(fn, example: dict, seed) -> dict:
    return run_many(fn, [example], [seed])[0]


def numpy_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resampling with edge clamping (input sampled at (i + 0.5) * in / out - 0.5)."""
    def taps(out_len, in_len):
        position = np.clip((np.arange(out_len) + 0.5) * in_len / out_len - 0.5, 0, in_len - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, in_len - 1), position - low

    image = image.astype(np.float64)
    (y0, y1, wy), (x0, x1, wx) = taps(out_h, image.shape[0]), taps(out_w, image.shape[1])
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def numpy_nearest(masks: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Output pixel takes the input pixel under its centre."""
    in_h, in_w = masks.shape[-2:]
    rows = np.minimum(np.floor((np.arange(out_h) + 0.5) * in_h / out_h).astype(int), in_h - 1)
    cols = np.minimum(np.floor((np.arange(out_w) + 0.5) * in_w / out_w).astype(int), in_w - 1)
    return masks[..., rows, :][..., cols]


def keep_aspect_size(h: int, w: int, short_side: int, max_size: int) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge: short side -> short_side, long side capped, rounded half up."""
    scale = min(short_side / min(h, w), max_size / max(h, w))
    return int(np.floor(h * scale + 0.5)), int(np.floor(w * scale + 0.5))


def random_example(rng, h: int, w: int, n: int, with_masks: bool = False) -> dict:
    """Random boxes inside and around the image plus hand-made degenerate ones (zero width, outside the
    image, inverted), with random classes, crowd flags and (optionally) random masks."""
    x = np.sort(rng.uniform(-0.2 * w, 1.2 * w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(-0.2 * h, 1.2 * h, (n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    special = np.array([[3, 3, 3, 9], [w + 1, 2, w + 5, 8], [9, 9, 4, 12]], np.float64)  # zero width, outside, inverted
    boxes = np.concatenate([boxes, special]).astype(np.float32)
    n = len(boxes)
    example = {
        "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "image_id": np.int64(rng.integers(0, 10_000)),
        "boxes": boxes,
        "classes": rng.integers(0, 7, n).astype(np.int64),
        "is_crowd": rng.random(n) < 0.3,
    }
    if with_masks:
        example["masks"] = (rng.random((n, h, w)) < 0.5).astype(np.uint8)
    return example


def reference(example: dict, new_h: int, new_w: int, flip: bool, size: int, max_instances: int,
              mask_size: int = 0) -> dict:
    """The preprocess's rules in float64 NumPy, for a known output size and flip decision."""
    h, w = example["image"].shape[:2]
    sy, sx = new_h / h, new_w / w
    image = (numpy_bilinear(example["image"], new_h, new_w) / 255.0 - MEAN) / STD
    boxes = example["boxes"].astype(np.float64) * np.array([sx, sy, sx, sy])
    if flip:
        image = image[:, ::-1]
        boxes = np.stack([new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0], boxes[:, 3]], axis=1)
    boxes = np.clip(boxes, 0, [new_w, new_h, new_w, new_h])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    kept = int(keep.sum())
    m = min(kept, max_instances)
    out = {
        "image": np.zeros((size, size, 3)), "boxes": np.zeros((max_instances, 4)),
        "classes": -np.ones(max_instances, np.int64), "is_crowd": np.zeros(max_instances, bool),
        "valid": np.arange(max_instances) < m, "image_info": np.array([h, w, sy, sx]),
        "dropped_degenerate_boxes": len(keep) - kept, "dropped_excess_instances": max(kept - max_instances, 0),
    }
    out["image"][:new_h, :new_w] = image
    out["boxes"][:m] = boxes[keep][:m]
    out["classes"][:m] = example["classes"][keep][:m]
    out["is_crowd"][:m] = example["is_crowd"][keep][:m]
    if "masks" in example:
        canvas = mask_size or size
        mh, mw = (max(1, int(np.floor(v * canvas / size + 0.5))) for v in (new_h, new_w))
        masks = numpy_nearest(example["masks"], mh, mw)
        if flip:
            masks = masks[..., ::-1]
        out["masks"] = np.zeros((max_instances, canvas, canvas), np.uint8)
        out["masks"][:m, :mh, :mw] = masks[keep][:m]
    return out


def assert_matches(out: dict, expected: dict, seed) -> None:
    np.testing.assert_allclose(out["image"], expected["image"], atol=2e-4, err_msg=f"seed={seed}")
    np.testing.assert_allclose(out["boxes"], expected["boxes"], atol=1e-3, err_msg=f"seed={seed}")
    np.testing.assert_allclose(out["image_info"], expected["image_info"], rtol=1e-6, err_msg=f"seed={seed}")
    for key in ("classes", "is_crowd", "valid", "dropped_degenerate_boxes", "dropped_excess_instances", "masks"):
        if key in expected:
            np.testing.assert_array_equal(out[key], expected[key], err_msg=f"{key} seed={seed}")


def flipped(out: dict, candidates: dict[bool, dict]) -> bool:
    """Which flip branch the output took, judged from the image alone (the two differ for random pixels)."""
    errors = {flip: np.abs(out["image"] - ref["image"]).max() for flip, ref in candidates.items()}
    return min(errors, key=errors.get)


def test_short_side_resize_flip_clip_and_pad_match_numpy(rng, seed):
    size, max_instances = 64, 12
    min_size, max_size = int(rng.integers(16, 64)), int(rng.integers(40, 65))
    config = detection_config(image_size=size, min_size=min_size, max_size=max_size, max_instances=max_instances)
    examples = [random_example(rng, *(int(v) for v in rng.integers(12, 90, 2)), int(rng.integers(0, 14))) for _ in range(10)]
    train_out = run_many(detection_inputs.make_detection_preprocess(config, info(), train=True), examples,
                         [[seed % 2**31, i] for i in range(10)])
    eval_out = run_many(detection_inputs.make_detection_preprocess(config, info(), train=False), examples, [[0, i] for i in range(10)])
    for example, out, evaluated in zip(examples, train_out, eval_out):
        new_h, new_w = keep_aspect_size(*example["image"].shape[:2], min_size, max_size)
        candidates = {f: reference(example, new_h, new_w, f, size, max_instances) for f in (False, True)}
        assert_matches(out, candidates[flipped(out, candidates)], seed)
        assert out["image_id"] == example["image_id"] and out["image_id"].dtype == np.int32
        assert_matches(evaluated, candidates[False], seed)  # evaluation never flips


def test_training_flips_about_half_of_the_examples(seed):
    # One box on the left half of a 4x8 image: flipped iff its x1 moves to the right half.
    config = detection_config(image_size=8, min_size=4, max_size=8, max_instances=1)
    fn = detection_inputs.make_detection_preprocess(config, info(), train=True)
    example = {"image": np.zeros((4, 8, 3), np.uint8), "image_id": np.int64(0), "boxes": np.array([[1, 1, 2, 2]], np.float32),
               "classes": np.zeros(1, np.int64), "is_crowd": np.zeros(1, bool)}
    ds = tf.data.Dataset.range(200).map(lambda i: fn(example, tf.stack([tf.constant(seed % 2**31, tf.int64), i])))
    flips = [out["boxes"][0, 0] > 4 for out in ds.as_numpy_iterator()]
    # Binomial(200, 0.5): outside [70, 130] with probability < 3e-5.
    assert 70 <= sum(flips) <= 130, f"{sum(flips)} of 200 flipped, seed={seed}"


def test_fixed_size_resizes_to_the_square_without_keeping_aspect(rng, seed):
    size = 48
    config = detection_config(image_size=size, fixed_size=True, random_flip=False, max_instances=20)
    examples = [random_example(rng, *(int(v) for v in rng.integers(10, 100, 2)), int(rng.integers(1, 10))) for _ in range(4)]
    outs = run_many(detection_inputs.make_detection_preprocess(config, info(), train=True), examples, [[seed % 2**31, i] for i in range(4)])
    for example, out in zip(examples, outs):
        assert_matches(out, reference(example, size, size, False, size, 20), seed)


@pytest.mark.parametrize("mode,jitter", [("choice", (20, 28, 36)), ("range", (18, 40))])
def test_scale_jitter_draws_short_sides_from_the_config(mode, jitter, rng, seed):
    h, w = (int(v) for v in rng.integers(20, 80, 2))
    max_size = 64
    config = detection_config(image_size=64, min_size=32, max_size=max_size, scale_jitter=jitter,
                              scale_jitter_mode=mode, random_flip=False)
    fn = detection_inputs.make_detection_preprocess(config, info(), train=True)
    example = random_example(rng, h, w, 3)
    sides = jitter if mode == "choice" else range(jitter[0], jitter[1] + 1)
    allowed = {keep_aspect_size(h, w, s, max_size) for s in sides}
    seen = set()
    for out in run_many(fn, [example] * 40, [[seed % 2**31, i] for i in range(40)]):
        got = tuple(int(round(v)) for v in out["image_info"][:2] * out["image_info"][2:])
        assert got in allowed, f"resized to {got}, allowed {sorted(allowed)}, seed={seed}"
        assert_matches(out, reference(example, *got, False, 64, 100), seed)
        seen.add(got)
    # Each allowed size has probability >= 1/23 a draw; one size 40 times in a row when two are allowed: < 1e-7.
    assert len(seen) > 1 or len(allowed) == 1, f"scale jitter gave one size {seen} in 40 draws, seed={seed}"
    eval_out = run(detection_inputs.make_detection_preprocess(config, info(), train=False), example, [0, 0])
    assert tuple(np.round(eval_out["image_info"][:2] * eval_out["image_info"][2:]).astype(int)) == keep_aspect_size(h, w, 32, max_size)


@pytest.mark.parametrize("mask_size", [0, 16])
def test_masks_are_resized_flipped_and_padded_with_the_image(mask_size, rng, seed):
    size = 32
    config = detection_config(image_size=size, min_size=24, max_size=32, with_masks=True, mask_size=mask_size, max_instances=9)
    fn = detection_inputs.make_detection_preprocess(config, info(("boxes", "masks")), train=False)
    examples = [random_example(rng, *(int(v) for v in rng.integers(8, 50, 2)), int(rng.integers(0, 8)), with_masks=True)
                for _ in range(4)]
    for example, out in zip(examples, run_many(fn, examples, [[seed % 2**31, i] for i in range(4)])):
        new_h, new_w = keep_aspect_size(*example["image"].shape[:2], 24, 32)
        assert out["masks"].dtype == np.uint8 and out["masks"].shape == (9, mask_size or size, mask_size or size)
        assert "box_masks" not in out
        assert_matches(out, reference(example, new_h, new_w, False, size, 9, mask_size), seed)
    no_masks = detection_inputs.make_detection_preprocess(config, info(("boxes", "masks")), train=False, eval_masks=False)
    assert "masks" not in run(no_masks, examples[0], [0, 0])


def reference_box_masks(masks: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """float64 [N, size, size]: torchvision RoIAlign (aligned, 2 x 2 samples per cell) of each mask over
    its box, in the masks' pixels (a sample within a pixel of the border reads the border pixel)."""
    out = np.zeros((len(masks), size, size))
    for n, (mask, (x1, y1, x2, y2)) in enumerate(zip(masks.astype(np.float64), boxes)):
        def taps(start, extent, length):
            position = start + (np.arange(2 * size) + 0.5) / (2 * size) * extent - 0.5
            inside = (position >= -1) & (position <= length)
            position = np.clip(position, 0, length - 1)
            low = np.floor(position).astype(int)
            high = np.minimum(low + 1, length - 1)
            frac = position - low
            weights = np.zeros((2 * size, length))
            np.add.at(weights, (np.arange(2 * size), low), (1 - frac) * inside)
            np.add.at(weights, (np.arange(2 * size), high), frac * inside)
            return weights.reshape(size, 2, length).mean(1)
        out[n] = taps(y1, y2 - y1, mask.shape[0]) @ mask @ taps(x1, x2 - x1, mask.shape[1]).T
    return out


def test_training_masks_are_cropped_to_their_final_boxes(rng, seed):
    """box_masks[i] is the original mask's RoIAlign over box i mapped back to original pixels (after
    resize, flip and clip), flipped with the image, as uint8 coverage; padding rows are 0."""
    config = detection_config(image_size=32, min_size=24, max_size=32, with_masks=True, mask_crop_size=6, max_instances=9)
    fn = detection_inputs.make_detection_preprocess(config, info(("boxes", "masks")), train=True)
    examples = [random_example(rng, *(int(v) for v in rng.integers(8, 50, 2)), int(rng.integers(1, 8)), with_masks=True)
                for _ in range(4)]
    for example, out in zip(examples, run_many(fn, examples, [[seed % 2**31, i] for i in range(4)])):
        h, w = example["image"].shape[:2]
        new_h, new_w = keep_aspect_size(h, w, 24, 32)
        candidates = {f: reference(example, new_h, new_w, f, 32, 9) for f in (False, True)}
        flip = flipped(out, candidates)
        expected = candidates[flip]
        assert "masks" not in out and out["box_masks"].shape == (9, 6, 6) and out["box_masks"].dtype == np.uint8
        kept = int(expected["valid"].sum())
        boxes = expected["boxes"][:kept].copy()
        if flip:  # the box in the unflipped image, whose crop is then mirrored
            boxes[:, [0, 2]] = new_w - boxes[:, [2, 0]]
        scale = np.array([new_w / w, new_h / h] * 2)
        keep = detection_keep(example, new_h, new_w)
        want = reference_box_masks(example["masks"][keep][:kept], boxes / scale, 6)
        if flip:
            want = want[..., ::-1]
        np.testing.assert_allclose(out["box_masks"][:kept] / 255.0, want, atol=0.5 / 255 + 2e-3, err_msg=f"seed={seed}")
        assert not out["box_masks"][kept:].any()


def detection_keep(example: dict, new_h: int, new_w: int) -> np.ndarray:
    """bool [N]: the example's boxes that keep an area after resize and clip (flip does not change it)."""
    h, w = example["image"].shape[:2]
    scale, limits = np.array([new_w / w, new_h / h] * 2), np.array([new_w, new_h] * 2)
    boxes = np.clip(example["boxes"].astype(np.float64) * scale, 0, limits)
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def test_excess_instances_are_cut_and_images_without_objects_kept(rng, seed):
    config = detection_config(image_size=32, min_size=32, max_size=32, max_instances=4, random_flip=False)
    fn = detection_inputs.make_detection_preprocess(config, info(), train=True)
    many = random_example(rng, 32, 32, 0)
    boxes = np.sort(rng.uniform(0, 32, (10, 2, 2)), axis=1).transpose(0, 2, 1).reshape(10, 4).astype(np.float32)
    boxes = boxes[:, [0, 2, 1, 3]]  # (x1, x2, y1, y2) sorted pairs -> (x1, y1, x2, y2)
    many.update(boxes=boxes, classes=np.arange(10, dtype=np.int64) % 7, is_crowd=np.zeros(10, bool))
    empty = {**many, "boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int64), "is_crowd": np.zeros(0, bool)}
    out, out_empty = run_many(fn, [many, empty], [[1, 2], [1, 3]])
    assert out["dropped_excess_instances"] == 6 and out["valid"].tolist() == [True] * 4, seed
    np.testing.assert_allclose(out["boxes"], boxes[:4], atol=1e-4)
    assert not out_empty["valid"].any() and (out_empty["classes"] == -1).all() and out_empty["boxes"].shape == (4, 4)


def test_loader_counts_add_to_the_preprocess_counts(rng, seed):
    config = detection_config(image_size=32, min_size=32, max_size=32, random_flip=False)
    example = random_example(rng, 20, 30, 2)
    example["dropped_degenerate_boxes"] = np.int32(5)
    out = run(detection_inputs.make_detection_preprocess(config, info(), train=False), example, [0, 0])
    expected = reference(example, *keep_aspect_size(20, 30, 32, 32), False, 32, 100)
    assert out["dropped_degenerate_boxes"] == expected["dropped_degenerate_boxes"] + 5 >= 8, seed


@pytest.mark.parametrize("overrides,message", [
    ({"max_size": 2000}, "max_size=2000 exceeds config.data.image_size"),
    ({"scale_jitter": (10, 20, 30), "scale_jitter_mode": "range"}, r"must be \(low, high\)"),
    ({"scale_jitter_mode": "uniform"}, "scale_jitter_mode='uniform' must be one of"),
    ({"fixed_size": True, "scale_jitter": (10,)}, "scale_jitter applies only with"),
    ({"max_instances": 0}, "max_instances=0 must be >= 1"),
])
def test_bad_config_is_refused_with_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        detection_inputs.make_detection_preprocess(detection_config(**overrides), info(), train=True)


def test_datasets_without_boxes_or_masks_are_refused():
    with pytest.raises(ValueError, match="has no boxes"):
        detection_inputs.make_detection_preprocess(detection_config(), info(("label",)), train=True)
    with pytest.raises(ValueError, match="with_masks=True but dataset 'test' has no instance masks"):
        detection_inputs.make_detection_preprocess(detection_config(with_masks=True), info(), train=True)
    with pytest.raises(ValueError, match="add_detection_data_defaults"):
        detection_inputs.make_detection_preprocess(ml_collections.ConfigDict({"data": {"image_size": 8}}), info(), train=True)


def test_shapes_masks_stay_aligned_with_their_boxes_through_resize(multi_shapes_config, seed):
    """The shapes dataset's boxes are the tight boxes of its masks; after resize (nearest for masks,
    exact scale for boxes) and padding, each evaluation mask must lie inside its box (to a pixel of rounding).
    Nearest downsampling may skip a thin edge row (a triangle's tip), so the mask can be smaller."""
    from vision_jax.data import datasets, pipeline

    c = detection_config(image_size=128, min_size=96, max_size=128, max_instances=8, with_masks=True)
    ds, data_info = datasets.load(multi_shapes_config, "train")
    fn = detection_inputs.make_detection_preprocess(c, data_info, train=False)
    batch = next(pipeline.train_batches(ds, fn, batch_size=8, seed=seed % 2**31))
    assert batch["image"].shape == (8, 128, 128, 3) and batch["masks"].shape == (8, 8, 128, 128)
    checked = 0
    for b in range(8):
        for i in np.flatnonzero(batch["valid"][b]):
            rows, cols = np.nonzero(batch["masks"][b, i])
            if len(rows) == 0:
                continue  # an object too thin to survive nearest downsampling
            tight = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            box = batch["boxes"][b, i]
            assert (tight[:2] >= box[:2] - 1).all() and (tight[2:] <= box[2:] + 1).all(), f"mask {tight} outside box {box}, image {b} object {i} seed={seed}"
            # and it fills the box up to the rows/columns nearest sampling may skip
            assert (tight[2:] - tight[:2] >= (box[2:] - box[:2]) * 0.5 - 1).all(), f"mask {tight} much smaller than box {box}, seed={seed}"
            checked += 1
    assert checked >= 8, f"only {checked} objects checked, seed={seed}"


def test_shapes_box_masks_fill_their_tight_boxes(multi_shapes_config, seed):
    """Training box masks of the shapes scenes (tight boxes): every one touches all four sides of its crop;
    padding rows are empty."""
    from vision_jax.data import datasets, pipeline

    c = detection_config(image_size=128, min_size=96, max_size=128, max_instances=8, with_masks=True, mask_crop_size=32)
    ds, data_info = datasets.load(multi_shapes_config, "train")
    fn = detection_inputs.make_detection_preprocess(c, data_info, train=True)
    batch = next(pipeline.train_batches(ds, fn, batch_size=8, seed=seed % 2**31))
    assert batch["box_masks"].shape == (8, 8, 32, 32) and "masks" not in batch
    for b in range(8):
        for i in np.flatnonzero(batch["valid"][b]):
            crop = batch["box_masks"][b, i].astype(np.float64) / 255
            sides = [crop[0].max(), crop[-1].max(), crop[:, 0].max(), crop[:, -1].max()]
            assert min(sides) > 0, f"crop does not touch a side of its box: {sides}, image {b} object {i} seed={seed}"
        assert not batch["box_masks"][b][~batch["valid"][b]].any()

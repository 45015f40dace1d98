"""Transforms against float64 NumPy references of the same rules, on fresh random inputs."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data import transforms


def numpy_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resampling with half-pixel centres and edge clamping (tf.image.resize / OpenCV rule):
    output pixel i samples the input at (i + 0.5) * in / out - 0.5."""
    image = image.astype(np.float64)
    in_h, in_w = image.shape[:2]

    def taps(out_len, in_len):
        position = np.clip((np.arange(out_len) + 0.5) * in_len / out_len - 0.5, 0, in_len - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, in_len - 1)
        return low, high, position - low

    y0, y1, wy = taps(out_h, in_h)
    x0, x1, wx = taps(out_w, in_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def numpy_nearest(masks: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    in_h, in_w = masks.shape[-2:]
    rows = np.minimum(np.floor((np.arange(out_h) + 0.5) * in_h / out_h).astype(int), in_h - 1)
    cols = np.minimum(np.floor((np.arange(out_w) + 0.5) * in_w / out_w).astype(int), in_w - 1)
    return masks[..., rows, :][..., cols]


def numpy_keep_aspect_size(h: int, w: int, short_side: int, max_size: int | None) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge: scale the short side to short_side, cap the long side, round."""
    scale = short_side / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def random_boxes(rng, n, h, w) -> np.ndarray:
    x = np.sort(rng.uniform(0, w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, (n, 2)), axis=1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)


def test_normalize_image_matches_imagenet_formula(rng, seed):
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    expected = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    out = transforms.normalize_image(tf.constant(image)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=f"seed={seed}")


def test_keep_aspect_sizes_follow_the_short_side_and_max_size_rule(rng, seed):
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(10, 2000, size=2))
        short_side = int(rng.integers(16, 1000))
        max_size = None if rng.uniform() < 0.3 else int(rng.integers(short_side, 2 * short_side))
        got = transforms.resized_size(h, w, short_side=short_side, max_size=max_size)
        assert tuple(int(v) for v in got) == numpy_keep_aspect_size(h, w, short_side, max_size), (h, w, short_side, max_size, seed)


@pytest.mark.parametrize("mode", ["fixed", "keep_aspect"])
def test_resize_image_and_boxes_matches_numpy_bilinear(mode, rng, seed):
    h, w = (int(v) for v in rng.integers(8, 60, size=2))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = random_boxes(rng, 5, h, w)
    if mode == "fixed":
        out_h, out_w = (int(v) for v in rng.integers(8, 80, size=2))
        kwargs = {"size": (out_h, out_w)}
    else:
        short_side, max_size = int(rng.integers(10, 70)), int(rng.integers(70, 120))
        out_h, out_w = numpy_keep_aspect_size(h, w, short_side, max_size)
        kwargs = {"short_side": short_side, "max_size": max_size}
    resized, scaled_boxes, scale = transforms.resize_image_and_boxes(tf.constant(image), tf.constant(boxes), **kwargs)
    assert resized.shape == (out_h, out_w, 3) and resized.dtype == tf.float32
    np.testing.assert_allclose(resized.numpy(), numpy_bilinear(image, out_h, out_w), atol=2e-3, err_msg=f"seed={seed}")
    expected_scale = np.array([out_h / h, out_w / w])
    np.testing.assert_allclose(scale.numpy(), expected_scale, rtol=1e-6)
    np.testing.assert_allclose(scaled_boxes.numpy(), boxes * expected_scale[[1, 0, 1, 0]], rtol=1e-5, err_msg=f"seed={seed}")


def test_resize_masks_is_nearest_pixel_centre(rng, seed):
    for _ in range(10):
        n, h, w = int(rng.integers(0, 4)), int(rng.integers(3, 50)), int(rng.integers(3, 50))
        out_h, out_w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        masks = rng.integers(0, 2, (n, h, w), dtype=np.uint8)
        semantic = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(h, w))
        np.testing.assert_array_equal(transforms.resize_masks(tf.constant(masks), (out_h, out_w)).numpy(),
                                      numpy_nearest(masks, out_h, out_w), err_msg=f"seed={seed}")
        np.testing.assert_array_equal(transforms.resize_masks(tf.constant(semantic), (out_h, out_w)).numpy(),
                                      numpy_nearest(semantic, out_h, out_w), err_msg=f"seed={seed}")


def test_horizontal_flip_moves_pixels_masks_and_boxes_together(rng, seed):
    h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((3, h, w), np.uint8)
    boxes = np.zeros((3, 4), np.float32)
    for i in range(3):  # rectangles whose tight pixel-edge boxes are the boxes
        x1, x2 = np.sort(rng.choice(w + 1, 2, replace=False))
        y1, y2 = np.sort(rng.choice(h + 1, 2, replace=False))
        masks[i, y1:y2, x1:x2] = 1
        boxes[i] = (x1, y1, x2, y2)
    flips = []
    for draw in range(200):
        seed_pair = tf.constant([seed % 2**31, draw], tf.int64)
        out_image, out_boxes, out_masks = transforms.random_horizontal_flip(tf.constant(image), tf.constant(boxes), tf.constant(masks), seed_pair)
        flipped = not np.array_equal(out_image.numpy(), image)
        flips.append(flipped)
        ref_image, ref_masks = (image[:, ::-1], masks[:, :, ::-1]) if flipped else (image, masks)
        ref_boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1) if flipped else boxes
        np.testing.assert_array_equal(out_image.numpy(), ref_image)
        np.testing.assert_array_equal(out_masks.numpy(), ref_masks)
        np.testing.assert_array_equal(out_boxes.numpy(), ref_boxes)
        for mask, box in zip(out_masks.numpy(), out_boxes.numpy()):  # boxes still bound their masks
            rows, cols = np.nonzero(mask)
            np.testing.assert_array_equal(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        again = transforms.random_horizontal_flip(tf.constant(image), None, None, seed_pair)[0]
        np.testing.assert_array_equal(again.numpy(), out_image.numpy())  # stateless: same seed, same result
    # Binomial(200, 0.5): 4.5 standard deviations is about +-32.
    assert abs(sum(flips) - 100) < 32, (sum(flips), seed)


def test_pad_to_size_pads_bottom_right_and_refuses_larger_inputs(rng, seed):
    h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
    target = (h + int(rng.integers(0, 6)), w + int(rng.integers(0, 6)))
    image = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    semantic = rng.integers(0, 5, (h, w), dtype=np.uint8)
    masks = rng.integers(0, 2, (2, h, w), dtype=np.uint8)
    np.testing.assert_array_equal(transforms.pad_to_size(tf.constant(image), target).numpy(),
                                  np.pad(image, [(0, target[0] - h), (0, target[1] - w), (0, 0)]))
    padded_semantic = transforms.pad_to_size(tf.constant(semantic), target, pad_value=255)
    np.testing.assert_array_equal(padded_semantic.numpy(), np.pad(semantic, [(0, target[0] - h), (0, target[1] - w)], constant_values=255))
    np.testing.assert_array_equal(transforms.pad_masks_to_size(tf.constant(masks), target).numpy(),
                                  np.pad(masks, [(0, 0), (0, target[0] - h), (0, target[1] - w)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pad_to_size: input larger than the target size"):
        transforms.pad_to_size(tf.constant(image), (h - 1, w) if h > 1 else (h, w - 1) if w > 1 else (0, 0))


@pytest.mark.parametrize("num_instances", [0, 3, 7])
def test_pad_instances_pads_or_truncates_to_max_instances(num_instances, rng, seed):
    max_instances, h, w = 5, 6, 8
    boxes = random_boxes(rng, num_instances, h, w)
    classes = rng.integers(0, 4, num_instances)
    is_crowd = rng.uniform(size=num_instances) < 0.3
    masks = rng.integers(0, 2, (num_instances, h, w), dtype=np.uint8)
    out = transforms.pad_instances(tf.constant(boxes.reshape(-1, 4)), tf.constant(classes, tf.int64), tf.constant(is_crowd),
                                   tf.constant(masks.reshape(-1, h, w)), max_instances=max_instances)
    kept = min(num_instances, max_instances)
    expected_boxes = np.zeros((max_instances, 4), np.float32)
    expected_boxes[:kept] = boxes[:kept]
    expected_classes = np.full(max_instances, -1, np.int32)
    expected_classes[:kept] = classes[:kept]
    expected_masks = np.zeros((max_instances, h, w), np.uint8)
    expected_masks[:kept] = masks[:kept]
    np.testing.assert_array_equal(out["boxes"].numpy(), expected_boxes)
    np.testing.assert_array_equal(out["classes"].numpy(), expected_classes)
    assert out["classes"].dtype == tf.int32
    np.testing.assert_array_equal(out["is_crowd"].numpy(), np.pad(is_crowd[:kept], (0, max_instances - kept)))
    np.testing.assert_array_equal(out["masks"].numpy(), expected_masks)
    np.testing.assert_array_equal(out["valid"].numpy(), np.arange(max_instances) < kept)
    assert int(out["num_instances"]) == num_instances


def test_random_crop_is_a_uniform_window_of_the_padded_input(rng, seed):
    h, w = int(rng.integers(3, 12)), int(rng.integers(3, 12))
    size = (int(rng.integers(2, 14)), int(rng.integers(2, 14)))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    semantic = rng.integers(0, 5, (h, w), dtype=np.uint8)
    padded_h, padded_w = max(h, size[0]), max(w, size[1])
    padded_image = np.pad(image, [(0, padded_h - h), (0, padded_w - w), (0, 0)])
    padded_semantic = np.pad(semantic, [(0, padded_h - h), (0, padded_w - w)], constant_values=255)
    offsets = []
    for draw in range(160):
        crop, crop_semantic, offset = transforms.random_crop(tf.constant(image), tf.constant(semantic),
                                                             tf.constant([seed % 2**31, draw]), size=size)
        top, left = (int(v) for v in offset)
        offsets.append((top, left))
        np.testing.assert_array_equal(crop.numpy(), padded_image[top:top + size[0], left:left + size[1]])
        np.testing.assert_array_equal(crop_semantic.numpy(), padded_semantic[top:top + size[0], left:left + size[1]])
    tops, lefts = np.array(offsets).T
    for values, high in ((tops, padded_h - size[0]), (lefts, padded_w - size[1])):
        counts = np.bincount(values, minlength=high + 1)
        assert len(counts) == high + 1, (counts, seed)  # never outside [0, high]
        expected = len(values) / (high + 1)
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1), (counts, seed)


def test_random_scale_resizes_by_a_factor_in_range(rng, seed):
    h, w = int(rng.integers(10, 50)), int(rng.integers(10, 50))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = random_boxes(rng, 4, h, w)
    for draw in range(5):
        resized, scaled_boxes, scale = transforms.random_scale(tf.constant(image), tf.constant(boxes), tf.constant([seed % 2**31, draw]),
                                                               min_scale=0.5, max_scale=2.0)
        out_h, out_w = resized.shape[:2]
        assert 0.5 * h - 0.5 <= out_h <= 2.0 * h + 0.5 and 0.5 * w - 0.5 <= out_w <= 2.0 * w + 0.5
        # The same factor on both axes, up to rounding of each side.
        assert abs(out_h / h - out_w / w) <= 0.5 / h + 0.5 / w + 1e-9, (out_h, out_w, h, w, seed)
        np.testing.assert_allclose(resized.numpy(), numpy_bilinear(image, out_h, out_w), atol=2e-3)
        np.testing.assert_allclose(scale.numpy(), [out_h / h, out_w / w], rtol=1e-6)
        np.testing.assert_allclose(scaled_boxes.numpy(), boxes * np.array([out_w / w, out_h / h] * 2), rtol=1e-5)


def test_transforms_trace_inside_a_tf_data_map(rng, seed):
    """The same ops inside a tf.data map (graph mode) give what they give eagerly."""
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    boxes = random_boxes(rng, 3, 20, 30)
    masks = rng.integers(0, 2, (3, 20, 30), dtype=np.uint8)

    def preprocess(example, seed_pair):
        flip_seed, scale_seed = tf.unstack(tf.random.split(seed_pair, 2))
        img, bxs, msk = transforms.random_horizontal_flip(example["image"], example["boxes"], example["masks"], flip_seed)
        img, bxs, scale = transforms.random_scale(img, bxs, scale_seed, min_scale=0.8, max_scale=1.2)
        msk = transforms.resize_masks(msk, tf.shape(img)[:2])
        img = transforms.pad_to_size(transforms.normalize_image(img), (40, 40))
        msk = transforms.pad_masks_to_size(msk, (40, 40))
        padded = transforms.pad_instances(bxs, tf.constant([0, 1, 2], tf.int64), tf.zeros([3], tf.bool), msk, max_instances=4)
        return {"image": img, "scale": scale, **padded}

    example = {"image": tf.constant(image), "boxes": tf.constant(boxes), "masks": tf.constant(masks)}
    seed_pair = tf.constant([seed % 2**31, 1], tf.int64)
    eager = preprocess(example, seed_pair)
    graph = next(iter(tf.data.Dataset.from_tensors((example, seed_pair)).map(preprocess)))
    for key in eager:
        np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), atol=1e-6, err_msg=f"{key} seed={seed}")
    assert graph["image"].shape == (40, 40, 3) and graph["masks"].shape == (4, 40, 40)

"""SSD augmentations: crop and expand box arithmetic against NumPy, boxes that stay on the drawn
objects, and the pipeline hook (data.ssd_augment) with fresh seeds (printed)."""

import numpy as np
import tensorflow as tf

from vision_jax.data import ssd_augment as aug
from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.data.detection_inputs import make_detection_preprocess
from vision_jax.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from vision_jax.train.config import base_config

COLOURS = np.array([[220, 20, 20], [20, 200, 30], [30, 40, 230], [240, 240, 30]], np.float32)
BACKGROUND = 128.0


def scene(rng, height: int, width: int, count: int):
    """A grey image with `count` non-overlapping solid rectangles (whole-pixel boxes, >= 6 px)."""
    image = np.full((height, width, 3), BACKGROUND, np.float32)
    boxes = []
    cell_w = width // count
    for k in range(count):
        x1 = k * cell_w + int(rng.integers(0, cell_w // 3))
        x2 = x1 + int(rng.integers(6, cell_w - (x1 - k * cell_w)))
        y1 = int(rng.integers(0, height - 8))
        y2 = int(rng.integers(y1 + 6, height + 1))
        image[y1:y2, x1:x2] = COLOURS[k]
        boxes.append([x1, y1, x2, y2])
    return image, np.asarray(boxes, np.float32)


def iou_np(window, boxes):
    iw = np.clip(np.minimum(window[2], boxes[:, 2]) - np.maximum(window[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(window[3], boxes[:, 3]) - np.maximum(window[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(window) + area(boxes) - inter)


def test_crop_windows_obey_the_sampling_rules_and_crop_boxes_like_numpy(rng, seed):
    height, width = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    # One large box (so that most min-IoU modes can be satisfied) and two random ones.
    sides = rng.uniform(0.4, 0.9, 2) * [width, height]
    corner = rng.uniform(0, 1, 2) * ([width, height] - sides)
    small = rng.uniform(0, 1, (2, 2)) * [width - 8, height - 8]
    boxes = np.concatenate([[np.concatenate([corner, corner + sides])], np.concatenate([small, small + 8], 1)]).astype(
        np.float32
    )
    cropped_any = 0
    for trial in range(24):
        tf_seed = tf.constant([seed % 1000, trial], tf.int64)
        window = aug.sample_crop_window(tf.constant(height), tf.constant(width), tf.constant(boxes), tf_seed).numpy()
        msg = f"seed={seed} trial={trial} window={window} image={height}x{width}"
        assert np.all(window == np.floor(window)) and window[0] >= 0 and window[1] >= 0, msg
        assert window[2] <= width and window[3] <= height, msg
        whole = np.array_equal(window, [0, 0, width, height])
        if not whole:
            cropped_any += 1
            w, h = window[2] - window[0], window[3] - window[1]
            assert w >= np.floor(0.3 * width) and h >= np.floor(0.3 * height) and 0.5 <= h / w <= 2.0, msg
            assert iou_np(window, boxes).max() >= 0.1 - 1e-6, msg
        image = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
        out_image, out_boxes, keep = (
            t.numpy() for t in aug.crop_to_window(tf.constant(image), tf.constant(boxes), tf.constant(window))
        )
        x1, y1, x2, y2 = window.astype(int)
        np.testing.assert_array_equal(out_image, image[y1:y2, x1:x2], err_msg=msg)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        expected_keep = whole | (
            (centres[:, 0] > x1) & (centres[:, 1] > y1) & (centres[:, 0] < x2) & (centres[:, 1] < y2)
        )
        np.testing.assert_array_equal(keep, expected_keep, err_msg=msg)
        shifted = boxes - np.array([x1, y1, x1, y1], np.float32)
        expected = np.clip(shifted, 0, np.array([x2 - x1, y2 - y1] * 2, np.float32))
        np.testing.assert_allclose(out_boxes, expected, err_msg=msg)
    assert cropped_any >= 6, f"seed={seed}: only {cropped_any} of 24 draws cropped (most of 5 modes should)"


def test_expand_puts_the_image_on_a_mean_canvas_and_shifts_boxes_by_the_same_offset(rng, seed):
    height, width = int(rng.integers(20, 60)), int(rng.integers(20, 60))
    image = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    boxes = np.array([[1.5, 2.0, 10.0, 12.25], [0, 0, width, height]], np.float32)
    expanded = 0
    for trial in range(8):
        tf_seed = tf.constant([seed % 1000, trial], tf.int64)
        out, out_boxes = (t.numpy() for t in aug.random_expand(tf.constant(image), tf.constant(boxes), tf_seed))
        msg = f"seed={seed} trial={trial} out={out.shape}"
        new_h, new_w = out.shape[:2]
        assert height <= new_h <= 4 * height and width <= new_w <= 4 * width, msg
        left, top = out_boxes[1, 0], out_boxes[1, 1]
        assert left == int(left) and top == int(top), msg
        np.testing.assert_allclose(out_boxes, boxes + np.array([left, top, left, top]), err_msg=msg)
        left, top = int(left), int(top)
        np.testing.assert_allclose(out[top : top + height, left : left + width], image, atol=1e-4, err_msg=msg)
        canvas = np.ones((new_h, new_w), bool)
        canvas[top : top + height, left : left + width] = False
        np.testing.assert_allclose(
            out[canvas], np.broadcast_to(255 * np.array(IMAGENET_MEAN_RGB), out[canvas].shape), atol=1e-3, err_msg=msg
        )
        expanded += (new_h, new_w) != (height, width)
    assert 1 <= expanded <= 7, f"seed={seed}: expand should apply about half the time, applied {expanded}/8"


def test_drawn_rectangles_stay_under_their_boxes_through_all_augmentations(rng, seed):
    for trial in range(10):
        image, boxes = scene(rng, 60, 96, 4)
        fields = {"classes": tf.range(4)}
        tf_seed = tf.constant([seed % 1000, trial], tf.int64)
        out, out_boxes, out_fields = aug.ssd_augment(tf.constant(image), tf.constant(boxes), fields, tf_seed)
        out, out_boxes, classes = out.numpy(), out_boxes.numpy(), out_fields["classes"].numpy()
        assert len(out_boxes) == len(classes) >= 1, f"seed={seed} trial={trial}: a crop keeps at least one box"
        for box, k in zip(out_boxes, classes):
            x1, y1, x2, y2 = box.astype(int)
            msg = f"seed={seed} trial={trial} box={box} class={k}"
            assert np.array_equal(box, box.astype(int)) and x2 > x1 and y2 > y1, msg
            inside = out[y1:y2, x1:x2].reshape(-1, 3)
            assert np.ptp(inside, axis=0).max() < 1e-3, f"{msg}: the box must cover one solid colour"
            colour = inside[0]
            # Where the box does not touch the image border, the pixels just outside are not the object.
            for row, col in (
                (y1 - 1, (x1 + x2) // 2),
                (y2, (x1 + x2) // 2),
                ((y1 + y2) // 2, x1 - 1),
                ((y1 + y2) // 2, x2),
            ):
                if 0 <= row < out.shape[0] and 0 <= col < out.shape[1]:
                    assert np.abs(out[row, col] - colour).max() > 1.0, (
                        f"{msg}: the object extends past its box at {(row, col)}"
                    )


def test_pipeline_hook_is_deterministic_per_seed_and_keeps_boxes_on_objects(rng, seed):
    config = base_config("detection", model="ssd")
    config.data.image_size, config.data.fixed_size, config.data.max_instances = 96, True, 6
    config.data.ssd_augment, config.data.random_flip = True, True
    info = DatasetInfo("toy", 4, ("a", "b", "c", "d"), {"train": 1}, (None, None, 3), frozenset({"boxes"}))
    preprocess = make_detection_preprocess(config, info, train=True)
    image, boxes = scene(rng, 64, 128, 4)
    example = {
        "image": tf.constant(image.astype(np.uint8)),
        "boxes": tf.constant(boxes),
        "classes": tf.range(4),
        "image_id": tf.constant(1, tf.int64),
    }
    outputs = [preprocess(example, tf.constant([seed % 1000, k], tf.int64)) for k in (0, 0, 1)]
    np.testing.assert_array_equal(outputs[0]["image"].numpy(), outputs[1]["image"].numpy(), err_msg=f"seed={seed}")
    for k in range(2):
        out = outputs[k if k == 0 else 2]
        pixels = (out["image"].numpy() * np.array(IMAGENET_STD_RGB) + np.array(IMAGENET_MEAN_RGB)) * 255
        for box in out["boxes"].numpy()[out["valid"].numpy()]:
            # After the bilinear resize, the box centre still lies on a solid object pixel that differs
            # from the grey background seen in the original (photometric changes apply to both alike).
            cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            assert box[2] > box[0] and box[3] > box[1], f"seed={seed}"
            centre = pixels[cy, cx]
            assert np.abs(centre - pixels[max(int(box[1]) - 2, 0), cx]).max() > 1.0 or box[1] < 2, (
                f"seed={seed} box={box}"
            )

"""Sliding-window detection (vision_jax/models/rcnn/sliding_window.py, windows.py).

Specification:
* OverFeat's equality: the detector's convolutional logits and deltas of every window equal the FC
  classifier (its kernels reshaped to matrices) run in float64 NumPy on that window's crop of the
  feature map (<= 1e-4), and the window's box is the union of its cells' s x s tiles mapped back by
  the pyramid's resize factors, in the documented order (scale, shape, row, column);
* window labels equal a float64 NumPy version of the rule (IoU >= fg: class, < bg: background,
  between / off-image / crowd-covered background: ignored);
* the detector trained by the one train loop overfits a few shapes scenes to COCO AP50 >= 0.9.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.rcnn import windows as window_ops
from vision_jax.models.table import build_model
from vision_jax.train import loop
from vision_jax.train.config import base_config

NUM_CLASSES = 3
STEPS = 200  # the overfit run (measured: AP50 1.0 after 200 steps; 0.75 after 150 with 128 samples)


def tiny_config(image_size: int = 64):
    c = base_config("detection", model="sliding_window")
    c.data.image_size = image_size
    c.model.backbone, c.model.width = "resnet18", 8
    w = c.model.sliding_window
    w.feature, w.scales, w.window_shapes = "C3", (1.0, 0.6), ((2, 2), (3, 2), (2, 3))
    w.fc_dim = 24
    return c


def numpy_fc_classifier(crop: np.ndarray, params: dict, num_fc: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 FC layers on one flattened [kh, kw, C] crop: (logits [C + 1], deltas [4C])."""
    x = crop.reshape(-1)
    for index in range(num_fc):
        layer = params[f"fc{index + 1}"]
        x = np.maximum(x @ np.asarray(layer["kernel"], np.float64).reshape(x.shape[0], -1) + layer["bias"], 0.0)
    head = lambda name: x @ np.asarray(params[name]["kernel"], np.float64)[0, 0] + params[name]["bias"]
    return head("cls_score"), head("bbox_pred")


def randomised(params: dict, rng: np.random.Generator) -> dict:
    """Every window classifier's parameters redrawn at scale 1 / sqrt(fan-in), so that the logits are
    O(1) and a wrong crop or order shows (the initial logits are ~0.01)."""

    def draw(path, value):
        if not any("window_" in str(key) for key in path):
            return value
        fan_in = int(np.prod(value.shape[:-1])) if value.ndim > 1 else 4
        return jnp.asarray(rng.normal(0.0, 1.0 / np.sqrt(fan_in), value.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, params)


def test_convolutional_scores_equal_the_fc_classifier_on_each_windows_feature_crop(rng, seed):
    height, width = 72, 88  # not multiples of the stride: the resize factors are not round
    config = tiny_config(max(height, width))
    model = build_model(config, NUM_CLASSES)
    s = model.settings
    images = jnp.asarray(rng.normal(size=(2, height, width, 3)), jnp.float32)
    variables = model.init(jax.random.key(seed % 1000), images, train=False)
    variables = {**variables, "params": randomised(variables["params"], rng)}
    outputs = model.apply(variables, images, False, method="forward")
    features = model.apply(variables, images, False, method="pyramid_features")
    logits, deltas, windows = (np.asarray(outputs[k]) for k in ("logits", "deltas", "windows"))

    n, stride = 0, model.feature_stride
    for scale, feature in zip(s.scales, features):
        feature = np.asarray(feature, np.float64)
        fy, fx = round(height * scale) / height, round(width * scale) / width
        for kh, kw in s.window_shapes:
            params = variables["params"][f"window_{kh}x{kw}"]
            for i in range(feature.shape[1] - kh + 1):
                for j in range(feature.shape[2] - kw + 1):
                    expected_box = [j * stride / fx, i * stride / fy, (j + kw) * stride / fx, (i + kh) * stride / fy]
                    np.testing.assert_allclose(windows[n], expected_box, rtol=1e-6, err_msg=f"window {n}, seed {seed}")
                    for b in range(images.shape[0]):
                        crop = feature[b, i : i + kh, j : j + kw, :]
                        expected_logits, expected_deltas = numpy_fc_classifier(crop, params, s.num_fc)
                        np.testing.assert_allclose(logits[b, n], expected_logits, atol=1e-4, rtol=1e-4,
                                                   err_msg=f"logits of window {n} (scale {scale}, {kh}x{kw} at "
                                                           f"{i},{j}), image {b}, seed {seed}")  # fmt: skip
                        np.testing.assert_allclose(deltas[b, n].reshape(-1), expected_deltas, atol=1e-4, rtol=1e-4,
                                                   err_msg=f"deltas of window {n}, image {b}, seed {seed}")  # fmt: skip
                    n += 1
    assert n == logits.shape[1] == windows.shape[0], f"{n} windows enumerated, the model scores {logits.shape[1]}"
    assert np.abs(logits).max() > 0.1, "logits too small for the comparison to mean anything"


def numpy_window_labels(windows, valid, gt_boxes, gt_classes, gt_valid, gt_is_crowd, fg, bg, num_classes):
    """float64 reference of windows.py's rule, one window at a time."""
    windows, gt_boxes = np.asarray(windows, np.float64), np.asarray(gt_boxes, np.float64)
    area = lambda b: max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)

    def intersection(a, b):
        return max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)

    labels, matched, margins = [], [], []
    for n, window in enumerate(windows):
        best, best_g = -1.0, 0
        for g, box in enumerate(gt_boxes):
            if gt_valid[g] and not gt_is_crowd[g]:
                inter = intersection(window, box)
                iou = inter / (area(window) + area(box) - inter)
                if iou > best:
                    best, best_g = iou, g
        if best >= fg:
            label = int(gt_classes[best_g])
        elif best >= bg:
            label = -1
        else:
            crowds = [box for g, box in enumerate(gt_boxes) if gt_valid[g] and gt_is_crowd[g]]
            crowd = [intersection(window, box) / area(window) for box in crowds]
            label = -1 if crowd and max(crowd) >= 0.7 else num_classes
        labels.append(label if valid[n] else -1)
        matched.append(best_g)
        margins.append(min(abs(best - fg), abs(best - bg)))
    return np.asarray(labels), np.asarray(matched), np.asarray(margins)


def test_window_labels_equal_a_float64_numpy_reference(rng, seed):
    windows = np.concatenate([
        window_ops.window_boxes((8, 8), 8, (2, 2), (1.0, 1.0)),
        window_ops.window_boxes((5, 5), 8, (3, 2), (0.6, 0.6)),
    ])  # fmt: skip
    num_gt = 7
    # Ground truth near some windows (so that every label occurs) and at random.
    near = windows[rng.choice(len(windows), 4, replace=False)] + rng.normal(0, 3, (4, 4))
    xy = rng.uniform(0, 50, (num_gt - 4, 2))
    anywhere = np.concatenate([xy, xy + rng.uniform(4, 30, (num_gt - 4, 2))], 1)
    gt_boxes = np.concatenate([near, anywhere]).astype(np.float32)
    gt_classes = rng.integers(0, NUM_CLASSES, num_gt)
    gt_valid = np.arange(num_gt) < num_gt - 1  # the last row is padding
    gt_is_crowd = np.zeros(num_gt, bool)
    gt_is_crowd[4] = True
    valid = rng.uniform(size=len(windows)) < 0.9
    fg, bg = 0.5, 0.3
    labels, matched = jax.jit(
        lambda *a: window_ops.window_labels(*a, num_classes=NUM_CLASSES, fg_iou_threshold=fg, bg_iou_threshold=bg)
    )(windows, valid, gt_boxes, gt_classes, gt_valid, gt_is_crowd)
    expected, expected_matched, margins = numpy_window_labels(
        windows, valid, gt_boxes, gt_classes, gt_valid, gt_is_crowd, fg, bg, NUM_CLASSES
    )
    clear = margins > 1e-5  # float32 and float64 IoU may fall on either side of a threshold within 1e-5
    assert clear.mean() > 0.99, f"too many IoUs at a threshold, seed {seed}"
    labels = np.asarray(labels)
    np.testing.assert_array_equal(labels[clear], expected[clear], err_msg=f"seed {seed}")
    foreground = clear & (expected >= 0) & (expected < NUM_CLASSES)
    np.testing.assert_array_equal(np.asarray(matched)[foreground], expected_matched[foreground], err_msg=f"seed {seed}")
    every_label = foreground.any() and (expected == NUM_CLASSES).any() and (expected == -1).any()
    assert every_label, f"seed {seed}: labels {np.unique(expected)}"


def test_a_window_larger_than_the_feature_map_is_refused_by_name():
    config = tiny_config()
    config.model.sliding_window.window_shapes = ((9, 9),)
    model = build_model(config, NUM_CLASSES)
    with pytest.raises(ValueError, match="window of 9x9 cells does not fit on a 8x8 feature map"):
        model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)


def test_an_unknown_feature_is_refused_by_its_key():
    config = tiny_config()
    config.model.sliding_window.feature = "P3"
    with pytest.raises(ValueError, match=r"config.model.sliding_window.feature='P3' is not an output"):
        build_model(config, NUM_CLASSES)


@pytest.mark.slow
def test_overfits_a_few_scenes_to_ap50(tmp_path):
    c = tiny_config()
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", str(tmp_path / "tfds")
    c.data.shapes_num_train, c.data.shapes_num_test, c.data.eval_split = 4, 1, "train"
    c.data.image_size = c.data.min_size = c.data.max_size = 128  # the scenes' size: objects 12-52 px
    c.data.random_flip, c.data.max_instances = False, 8
    w = c.model.sliding_window
    w.scales, w.window_shapes, w.fc_dim = (1.0, 0.5), ((2, 2), (3, 3), (4, 4)), 64  # 16-32 px and 32-64 px
    w.num_samples = 64  # 16 foreground windows at most: ~all of them here, and a larger share of the loss
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = STEPS, 2, 4
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, STEPS, STEPS
    c.train.num_pictures, c.train.progress_bar = 0, False
    results = loop.train_and_evaluate(c, str(tmp_path / "run"))
    print(f"after {STEPS} steps on 4 scenes: {results}")
    assert results["AP50"] >= 0.9, f"AP50={results['AP50']:.3f} after {STEPS} steps on 4 scenes: {results}"

"""The detection task's glue: image extents from the pipeline's image_info, config errors by key."""

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.tasks.detection import DetectionTask, image_sizes
from vision_jax.train.config import base_config

INFO = DatasetInfo(
    name="synthetic",
    num_classes=2,
    class_names=("a", "b"),
    num_examples={"train": 1},
    image_shape=(None, None, 3),
    has=frozenset({"boxes"}),
)


def test_image_sizes_are_the_unpadded_extent_of_the_preprocessed_image(rng, seed):
    config = base_config("detection")
    config.data.image_size, config.data.min_size, config.data.max_size = 128, 80, 120
    preprocess = DetectionTask(config).preprocess(INFO, train=False)
    height, width = (int(v) for v in rng.integers(30, 400, 2))
    example = {
        "image": tf.constant(rng.integers(1, 255, (height, width, 3)), tf.uint8),
        "image_id": tf.constant(1, tf.int64),
        "boxes": tf.constant([[1.0, 1.0, 10.0, 10.0]]),
        "classes": tf.constant([0], tf.int64),
    }
    out = preprocess(example, tf.constant([0, 0], tf.int64))
    image = out["image"].numpy()
    # The canvas is zero-padded at the bottom and right; a random image has no all-zero row or column.
    rows, cols = np.flatnonzero(np.any(image != 0, axis=(1, 2))), np.flatnonzero(np.any(image != 0, axis=(0, 2)))
    got = np.asarray(image_sizes(out["image_info"].numpy()[None], 128))[0]
    np.testing.assert_array_equal(got, [rows[-1] + 1, cols[-1] + 1], err_msg=f"seed={seed} image {height}x{width}")
    # All-zero rows (the padding of a last eval batch) get the canvas, never a zero-sized image.
    np.testing.assert_array_equal(np.asarray(image_sizes(np.zeros((1, 4), np.float32), 128)), [[128, 128]])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.name", "yolo", "config.model.name='yolo' is not a detection model"),
        ("data.eval_metric", "map", "config.data.eval_metric='map' is not one of"),
        ("model.rcnn.anchor_sizes", ((32,), (64,)), r"config\.model\.rcnn\.anchor_sizes=.* needs 5 levels \(P2..P6\)"),
        (
            "model.rcnn.roi_pooler_type",
            "pool",
            r"config\.model\.rcnn\.roi_pooler_type='pool' is not 'align': faster_rcnn \(FPN\) pools with 'align'",
        ),
        ("model.rcnn.rpn_fg_iou_threshold", 1.5, r"config\.model\.rcnn\.rpn_fg_iou_threshold=1\.5 must be in \[0, 1\]"),
        ("model.backbone", "vgg16", "config.model.backbone='vgg16': the R-CNN detectors need a ResNet"),
    ],
)
def test_bad_config_values_are_refused_by_key(key, value, message):
    config = base_config("detection", model="faster_rcnn")
    *path, name = key.split(".")
    group = config
    for part in path:
        group = group[part]
    with config.unlocked():
        group[name] = value
    with pytest.raises(ValueError, match=message):
        DetectionTask(config).build_model(INFO)


def test_c4_needs_one_anchor_level():
    config = base_config("detection", model="faster_rcnn_c4")
    with pytest.raises(ValueError, match=r"config\.model\.rcnn\.anchor_sizes=.* needs 1 level \(C4\)"):
        DetectionTask(config).build_model(INFO)


def test_pictures_paint_each_detections_mask_in_its_own_colour():
    """Two touching detections of one class with all-ones 28 x 28 masks on boxes 16 x 32 and 20 x 22
    (the paste covers the pixels whose centre is in the box): each mask's inside is blended at 45 % in
    its own colour (viz.instance_colour(0), (1)), so the picture holds 14 x 30 and 18 x 20 interior
    pixels of those blends (x 4 x 4: the 64 px image is drawn 4x), less what box outlines and captions
    cover; the two colours differ although the class is the same."""
    from vision_jax import viz

    config = base_config("detection", model="mask_rcnn")
    config.data.image_size = 64
    config.model.draw_score_threshold = 0.5
    grey = np.zeros((1, 64, 64, 3), np.float32)  # normalised 0: the ImageNet mean colour
    batch = {"image": grey, "image_info": np.array([[64, 64, 1, 1]], np.float32), "boxes": np.zeros((1, 2, 4), np.float32),
             "classes": np.zeros((1, 2), np.int32), "valid": np.zeros((1, 2), bool), "is_crowd": np.zeros((1, 2), bool)}
    predictions = {"boxes": np.array([[[8, 8, 24, 40], [24, 8, 44, 30]]], np.float32), "scores": np.array([[0.9, 0.8]]),
                   "classes": np.zeros((1, 2), np.int32), "valid": np.ones((1, 2), bool),
                   "masks": np.ones((1, 2, 28, 28), np.float32)}  # fmt: skip
    picture = DetectionTask(config).draw(batch, predictions, INFO)[0]
    mean_colour = viz.to_uint8(grey[0, :1, :1])[0, 0].astype(np.float32)
    counts = []
    for index, interior in ((0, 14 * 30), (1, 18 * 20)):
        blend = np.round(0.55 * mean_colour + 0.45 * np.asarray(viz.instance_colour(index), np.float32))
        counts.append(int(np.all(picture == blend.astype(np.uint8), axis=-1).sum()))
        assert 0.6 * interior * 16 <= counts[-1] <= interior * 16, f"instance {index}: {counts[-1]} blended pixels"
    assert viz.instance_colour(0) != viz.instance_colour(1)

"""The detection task's glue: image extents from the pipeline's image_info, config errors by key."""

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.tasks.detection import DetectionTask, image_sizes, masks_on_canvas
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


def test_masks_on_canvas_paste_each_box_mask_at_the_pipelines_mask_resolution():
    """An all-ones box mask pasted with detectron2's semantics covers exactly the canvas pixels whose
    centre lies in the box (bilinear with zero padding reaches 0.5 at the box edge); on a mask canvas
    at half resolution the box is halved: [8, 8, 24, 40] -> columns 4..11, rows 4..19. A zero box
    (padding row) pastes nothing."""
    masks = np.ones((1, 2, 28, 28), np.float32)
    boxes = np.array([[[8.0, 8.0, 24.0, 40.0], [0.0, 0.0, 0.0, 0.0]]], np.float32)
    for mask_side, (cols, rows) in ((64, (range(8, 24), range(8, 40))), (32, (range(4, 12), range(4, 20)))):
        got = np.asarray(masks_on_canvas(masks, boxes, 64, mask_side))
        assert got.shape == (1, 2, mask_side, mask_side) and got.dtype == np.bool_
        want = np.zeros((mask_side, mask_side), bool)
        want[rows.start:rows.stop, cols.start:cols.stop] = True
        np.testing.assert_array_equal(got[0, 0], want, err_msg=f"mask_side={mask_side}")
        assert not got[0, 1].any()

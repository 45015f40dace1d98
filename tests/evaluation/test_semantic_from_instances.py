"""Instance masks merged into a semantic label map (evaluation/semantic_from_instances.py) and scored as
scripts/semantic_from_instances.py scores Mask R-CNN beside FCN-8s, against NumPy references."""

import importlib.util
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data import datasets
from vision_jax.data.instance_masks import box_masks
from vision_jax.evaluation.semantic_from_instances import label_map_from_instances, label_maps_from_predictions
from vision_jax.train.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script():
    spec = importlib.util.spec_from_file_location("semantic_script", os.path.join(REPO, "scripts/semantic_from_instances.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_label_map(masks, scores, classes, threshold):
    """Per pixel: class + 1 of the highest-scoring covering detection with score >= threshold, else 0."""
    height, width = masks.shape[1:]
    out = np.zeros((height, width), np.int64)
    for r in range(height):
        for c in range(width):
            covering = [k for k in range(len(masks)) if masks[k, r, c] and scores[k] >= threshold]
            if covering:
                out[r, c] = classes[max(covering, key=lambda k: scores[k])] + 1
    return out


def test_highest_scoring_detection_above_the_threshold_wins_each_pixel(rng, seed):
    masks = rng.random((7, 12, 15)) < 0.4  # overlapping
    scores = rng.permutation(np.linspace(0.1, 0.95, 7))  # distinct, some below the threshold
    classes = rng.integers(0, 4, 7)
    got = label_map_from_instances(masks, scores, classes, 0.5)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, reference_label_map(masks, scores, classes, 0.5), err_msg=f"seed={seed}")


def reference_miou(predicted: list[np.ndarray], truth: list[np.ndarray], num_classes: int) -> float:
    """Mean over the classes present in truth or predictions of |P & T| / |P | T| over all pixels."""
    p, t = np.concatenate([x.ravel() for x in predicted]), np.concatenate([x.ravel() for x in truth])
    ious = [np.sum((p == k) & (t == k)) / np.sum((p == k) | (t == k)) for k in range(num_classes) if np.any((p == k) | (t == k))]
    return float(np.mean(ious))


def test_the_scenes_own_instances_read_back_as_their_semantic_labels(tmp_path, rng, seed):
    """A constructed Mask R-CNN output from the shapes test scenes' own instances (each mask cropped to
    its box at 28 x 28 as the mask head would give it, score 0.9, the right class) goes through the
    script's path: pasted at the original resolution, merged, scored. The mIoU equals a NumPy reference
    on the same label maps, and the label maps give back the scenes' semantic labels (mIoU >= 0.9: only
    the 28 x 28 resampling of each mask is lost)."""
    data = ml_collections.ConfigDict({"name": "shapes", "shapes_variant": "multi", "shapes_num_train": 2,
                                      "shapes_num_test": 6, "data_dir": str(tmp_path / "tfds")})  # fmt: skip
    ds, info = datasets.load(data, "test")
    examples = list(ds.as_numpy_iterator())
    k = 8
    predictions = {"boxes": np.zeros((6, k, 4), np.float32), "scores": np.zeros((6, k), np.float32),
                   "classes": np.zeros((6, k), np.int32), "valid": np.zeros((6, k), bool),
                   "masks": np.zeros((6, k, 28, 28), np.float32)}  # fmt: skip
    batch = {"image_info": np.tile([128, 128, 1, 1], (6, 1)).astype(np.float32), "image_id": np.zeros(6, np.int32),
             "example_valid": np.ones(6, bool)}  # fmt: skip
    for b, ex in enumerate(examples):
        n = len(ex["classes"])
        predictions["boxes"][b, :n] = ex["boxes"]
        predictions["scores"][b, :n] = rng.uniform(0.6, 1.0, n)
        predictions["classes"][b, :n] = ex["classes"]
        predictions["valid"][b, :n] = True
        predictions["masks"][b, :n] = box_masks(tf.constant(ex["masks"]), tf.constant(ex["boxes"]), 28).numpy() / 255
        batch["image_id"][b] = ex["image_id"]
    maps = label_maps_from_predictions(predictions, batch, score_threshold=0.5)
    truth = {int(ex["image_id"]): ex["segmentation"] for ex in examples}
    module = script()
    results, count = module.score_label_maps(maps, truth, info.segmentation_class_names)
    assert count == 6
    want = reference_miou([m for _, m in maps], [truth[i] for i, _ in maps], len(info.segmentation_class_names))
    assert results["mIoU"] == pytest.approx(want, abs=1e-12), f"seed={seed}"
    assert results["mIoU"] >= 0.9, f"{results} seed={seed}"
    assert module.semantic_truth(data, "test").keys() == truth.keys()


def test_the_shapes_configs_score_the_same_images_and_other_data_is_refused(repo_root):
    module = script()
    detection = load_config_file(os.path.join(repo_root, "configs/detection/shapes_mask_rcnn.py"))
    segmentation = load_config_file(os.path.join(repo_root, "configs/segmentation/shapes_fcn8s.py"))
    module.check_same_images(detection, segmentation)  # the shipped pair compares like with like
    segmentation.data.shapes_num_test = 50
    with pytest.raises(SystemExit, match="read different data.*shapes_num_test"):
        module.check_same_images(detection, segmentation)

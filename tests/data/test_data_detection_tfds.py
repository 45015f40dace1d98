"""tfds detection datasets (coco/2017, voc/2007) through load() and the detection preprocess, on mock data.

tfds.testing.mock_data gives every object field its own random length and random, often inverted,
boxes; the reference below cleans the raw examples with NumPy and the loader must agree.
"""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets, detection_inputs, detection_tfds, pipeline


def numpy_canonical(name: str, raw: dict, position: int) -> dict:
    """Reference: fields cut to their common length, normalised (ymin, xmin, ymax, xmax) -> absolute
    (x1, y1, x2, y2) (VOC: x1, y1 - 1), clipped to the image, boxes without area removed and counted."""
    h, w = raw["image"].shape[:2]
    objects = raw["objects"]
    flag = "is_difficult" if name.startswith("voc") else "is_crowd"
    n = min(len(objects["bbox"]), len(objects["label"]), len(objects[flag]))
    ymin, xmin, ymax, xmax = objects["bbox"][:n].astype(np.float64).T
    boxes = np.stack([xmin * w, ymin * h, xmax * w, ymax * h], axis=1)
    if name.startswith("voc"):
        boxes[:, :2] -= 1
    boxes = np.clip(boxes, 0, [w, h, w, h])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = {"boxes": boxes[keep], "classes": objects["label"][:n][keep], flag: objects[flag][:n][keep],
           "dropped_degenerate_boxes": n - int(keep.sum()),
           "image_id": raw["image/id"] if "image/id" in raw else position}
    if flag == "is_difficult":
        out["is_crowd"] = np.zeros(int(keep.sum()), bool)
    return out


@pytest.mark.parametrize("name,split,num_classes", [("coco/2017", "validation", 80), ("voc/2007", "test", 20)])
def test_mock_examples_are_cleaned_into_consistent_canonical_examples(name, split, num_classes, tmp_path, seed):
    num_mock = 3 + seed % 3
    config = ml_collections.ConfigDict({"name": name, "root": None, "data_dir": str(tmp_path)})
    with tfds.testing.mock_data(num_examples=num_mock):
        raw = list(tfds.as_numpy(tfds.builder(name, data_dir=str(tmp_path)).as_dataset(split=split)))
        ds, info = datasets.load(config, split)
        examples = list(ds.as_numpy_iterator())
    assert info.num_classes == num_classes and info.has == {"boxes"} and info.num_examples == {split: num_mock}
    assert len(examples) == num_mock
    total_dropped = 0
    for position, (example, raw_example) in enumerate(zip(examples, raw)):
        expected = numpy_canonical(name, raw_example, position)
        np.testing.assert_array_equal(example["image"], raw_example["image"])
        np.testing.assert_allclose(example["boxes"], expected["boxes"], atol=1e-4, err_msg=f"{name} seed={seed}")
        for key in ("classes", "is_crowd", "is_difficult", "dropped_degenerate_boxes", "image_id"):
            if key in expected:
                np.testing.assert_array_equal(example[key], expected[key], err_msg=f"{name} {key} seed={seed}")
        assert example["boxes"].dtype == np.float32 and example["classes"].dtype == np.int64
        n = len(example["boxes"])
        assert all(len(example[k]) == n for k in ("classes", "is_crowd"))
        total_dropped += int(example["dropped_degenerate_boxes"])
    assert total_dropped > 0, "mock data always holds inverted boxes: the test must exercise dropping"


@pytest.mark.parametrize("name,split", [("coco/2017", "train"), ("voc/2007", "validation")])
def test_mock_pipeline_gives_fixed_shapes_and_boxes_consistent_with_the_image(name, split, tmp_path, seed):
    size, max_instances, batch_size = 64, 8, 2
    c = ml_collections.ConfigDict({"data": {"name": name, "root": None, "data_dir": str(tmp_path)}})
    detection_inputs.add_detection_data_defaults(c)
    c.data.update(image_size=size, min_size=48, max_size=size, max_instances=max_instances)
    with tfds.testing.mock_data(num_examples=5):
        ds, info = datasets.load(c.data, split)
        canonical = list(ds.as_numpy_iterator())
        preprocess = detection_inputs.make_detection_preprocess(c, info, train=False)
        batches = list(pipeline.eval_batches(ds, preprocess, batch_size=batch_size))
    rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert rows["image"].shape == (6, size, size, 3) and rows["boxes"].shape == (6, max_instances, 4)
    assert rows["example_valid"].tolist() == [True] * 5 + [False]
    if name.startswith("voc"):
        assert rows["is_difficult"].shape == (6, max_instances)
    for i, example in enumerate(canonical):
        h, w = example["image"].shape[:2]
        scale = min(48 / min(h, w), size / max(h, w))
        new_h, new_w = np.floor(h * scale + 0.5), np.floor(w * scale + 0.5)
        np.testing.assert_allclose(rows["image_info"][i], [h, w, new_h / h, new_w / w], rtol=1e-6)
        n = min(len(example["boxes"]), max_instances)
        valid = rows["valid"][i]
        # Loader boxes have area; scaled they still do, so all are kept up to max_instances.
        assert valid.sum() == n and not valid[n:].any(), f"{name} seed={seed}"
        scaled = example["boxes"][:n] * np.array([new_w / w, new_h / h] * 2)
        np.testing.assert_allclose(rows["boxes"][i][:n], scaled, atol=1e-3, err_msg=f"{name} seed={seed}")
        assert (rows["boxes"][i][:n, 2:] <= [new_w + 1e-3, new_h + 1e-3]).all()
        assert (rows["classes"][i][:n] == example["classes"][:n]).all() and (rows["classes"][i][n:] == -1).all()
        assert rows["dropped_excess_instances"][i] == max(0, len(example["boxes"]) - max_instances)


def test_coco_category_ids_are_the_80_of_1_to_90():
    ids = detection_tfds.category_ids("coco/2017")
    # COCO 2017 instances use ids 1..90 without these 10 (published category list).
    assert sorted(set(range(1, 91)) - set(ids)) == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert len(ids) == 80 and list(ids) == sorted(ids)
    assert detection_tfds.category_ids("voc/2007") is None

"""A user's COCO-format folder through load(): boxes, classes, crowd flags, masks, splits and errors."""
from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from coco_folder import SORTED_NAMES, write_coco_folder
from vision_jax.data import datasets, detection_inputs, pipeline
from vision_jax.evaluation.coco import make_coco_evaluator


def data_config(root, **extra) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"name": "coco_json", "root": str(root), "data_dir": None, **extra})


def test_examples_match_the_json_and_masks_decode_like_the_reference(tmp_path, rng, seed):
    image_ids = [int(v) for v in rng.choice(10_000, 5, replace=False)]
    reference = write_coco_folder(tmp_path, rng, "train", image_ids)
    ds, info = datasets.load(data_config(tmp_path), "train")
    assert info.class_names == SORTED_NAMES and info.has == {"boxes", "masks"}
    assert info.num_examples == {"train": 5}
    examples = list(ds.as_numpy_iterator())
    assert [int(e["image_id"]) for e in examples] == sorted(image_ids), seed  # images in id order
    for example in examples:
        expected = reference[int(example["image_id"])]
        np.testing.assert_array_equal(example["image"], expected["pixels"])
        kept = [o for o in expected["objects"] if o["mask"] is not None]
        assert example["dropped_degenerate_boxes"] == len(expected["objects"]) - len(kept)
        assert example["boxes"].shape == (len(kept), 4) and example["masks"].shape == (len(kept),) + expected["size"]
        for i, obj in enumerate(kept):
            np.testing.assert_allclose(example["boxes"][i], obj["box"], atol=1e-4, err_msg=f"seed={seed}")
            assert example["classes"][i] == obj["class"] and example["is_crowd"][i] == obj["crowd"], seed
            np.testing.assert_array_equal(example["masks"][i], obj["mask"], err_msg=f"object {obj['id']} seed={seed}")
    assert any(len(e["boxes"]) == 0 for e in examples), "an image without annotations must be kept"


def test_processes_read_disjoint_parts_and_masks_can_be_skipped(tmp_path, rng):
    write_coco_folder(tmp_path, rng, "train", [3, 1, 4, 15, 9])
    parts = [datasets.load(data_config(tmp_path, with_masks=False), "train", process_index=p, process_count=2) for p in range(2)]
    ids = [[int(e["image_id"]) for e in ds.as_numpy_iterator()] for ds, _ in parts]
    assert sorted(ids[0] + ids[1]) == [1, 3, 4, 9, 15] and abs(len(ids[0]) - len(ids[1])) <= 1
    assert parts[0][1].has == {"boxes"} and "masks" not in next(iter(parts[0][0].as_numpy_iterator()))


def test_test_split_falls_back_to_val(tmp_path, rng):
    write_coco_folder(tmp_path, rng, "train", [1, 2])
    write_coco_folder(tmp_path, rng, "val", [7, 8, 9])
    ds, info = datasets.load(data_config(tmp_path), "test")
    assert [int(e["image_id"]) for e in ds.as_numpy_iterator()] == [7, 8, 9]
    with pytest.raises(ValueError, match=r"train2\.json not found; splits available in .*\['train', 'val'\]"):
        datasets.load(data_config(tmp_path), "train2")


def edit_json(path, change) -> None:
    with open(path) as f:
        content = json.load(f)
    change(content)
    with open(path, "w") as f:
        json.dump(content, f)


def test_bad_folders_are_refused_with_the_problem_named(tmp_path, rng):
    with pytest.raises(ValueError, match="is not a folder; set --config.data.root"):
        datasets.load(data_config(tmp_path / "nowhere"), "train")
    for name, change, message in [
        ("missing_image", lambda c: c["images"][0].update(file_name="gone.png"), r"gone\.png .* not found"),
        ("bad_category", lambda c: c["annotations"][0].update(category_id=99), "has category_id 99 not in categories"),
        ("big_id", lambda c: c["images"][0].update(id=2**40), "outside \\[0, 2\\*\\*31\\)"),
    ]:
        root = tmp_path / name
        write_coco_folder(root, rng, "train", [1, 2, 3])
        if name == "bad_category":
            edit_json(root / "train.json", lambda c: c["annotations"].sort(key=lambda a: a["id"]))
        edit_json(root / "train.json", change)
        with pytest.raises(ValueError, match=message):
            datasets.load(data_config(root), "train")
    root = tmp_path / "categories_differ"
    write_coco_folder(root, rng, "train", [1, 2])
    write_coco_folder(root, rng, "val", [3])
    edit_json(root / "val.json", lambda c: c["categories"][0].update(name="dog"))
    datasets.load(data_config(root), "train")
    with pytest.raises(ValueError, match="every split must list the same categories"):
        datasets.load(data_config(root), "val")


def test_name_and_root_are_all_a_user_needs(tmp_path, rng, seed):
    """Issue 5 acceptance b, data side: the shared config with only data.name and data.root set trains
    on train.json and evaluates on val.json (the default eval split 'test' falls back to 'val'), and the
    evaluator scores the ground truth itself, mapped through the pipeline, as AP 1.0 on the json."""
    from vision_jax.train.config import base_config

    write_coco_folder(tmp_path, rng, "train", [5, 6, 7, 8])
    write_coco_folder(tmp_path, rng, "val", [21, 22, 23])
    c = base_config("classification")
    detection_inputs.add_detection_data_defaults(c)
    c.data.update(image_size=64, min_size=48, max_size=64, max_instances=8)  # what a small detector config sets
    c.data.name, c.data.root = "coco_json", str(tmp_path)  # what the user passes
    train_ds, info = datasets.load(c.data, c.data.train_split)
    assert info.num_classes == 3 and info.class_names == SORTED_NAMES
    batch = next(pipeline.train_batches(train_ds, detection_inputs.make_detection_preprocess(c, info, True),
                                        batch_size=2, seed=seed % 2**31))
    assert batch["image"].shape == (2, 64, 64, 3) and batch["boxes"].shape == (2, 8, 4)
    eval_ds, _ = datasets.load(c.data, c.data.eval_split)
    evaluator = make_coco_evaluator(c.data, info, c.data.eval_split)
    for batch in pipeline.eval_batches(eval_ds, detection_inputs.make_detection_preprocess(c, info, False), batch_size=2):
        predictions = {"boxes": batch["boxes"], "scores": np.where(batch["valid"], 0.9, 0.0),
                       "classes": np.maximum(batch["classes"], 0), "valid": batch["valid"] & ~batch["is_crowd"]}
        evaluator.update(predictions, batch)
    result = evaluator.result()
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0), f"{result} seed={seed}"
    assert sorted(evaluator.dataset_image_ids) == [21, 22, 23]
    saved = evaluator.results_json()
    assert {d["category_id"] for d in saved} <= {3, 7, 12} and {d["image_id"] for d in saved} <= {21, 22, 23}
    assert sorted(evaluator.json_ground_truth.getImgIds()) == [21, 22, 23]  # the val json is the ground truth

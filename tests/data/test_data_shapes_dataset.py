"""The shapes dataset through load(): canonical fields, agreement with the generator, consistency of
masks/boxes/segmentation, determinism of generation, and process sharding."""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_test_helpers import SMALL_SHAPES, shapes_config
from vision_jax.data import datasets
from vision_jax.data import shapes
from vision_jax.data import shapes_builder


def load_all(config, split, **kwargs):
    ds, info = datasets.load(config, split, **kwargs)
    return list(ds.as_numpy_iterator()), info


@pytest.mark.parametrize("variant", ["single", "multi"])
def test_canonical_fields_and_info(variant, tfds_data_dir):
    examples, info = load_all(shapes_config(variant, tfds_data_dir), "train")
    size = shapes.VARIANTS[variant].image_size
    assert info.num_examples == {"train": SMALL_SHAPES[variant][0], "test": SMALL_SHAPES[variant][1]}
    assert len(examples) == SMALL_SHAPES[variant][0]
    assert info.class_names == shapes.SHAPE_CLASS_NAMES and info.num_classes == 5
    assert info.image_shape == (size, size, 3)
    assert info.has == {"label", "boxes", "masks", "segmentation"}
    assert info.segmentation_class_names[0] == "background"
    for example in examples:
        n = len(example["classes"])
        expected = {
            "image": ((size, size, 3), np.uint8), "image_id": ((), np.int64), "label": ((), np.int64),
            "boxes": ((n, 4), np.float32), "classes": ((n,), np.int64), "is_crowd": ((n,), np.bool_),
            "masks": ((n, size, size), np.uint8), "segmentation": ((size, size), np.uint8),
        }
        assert {k: (v.shape, v.dtype) for k, v in example.items()} == expected
    assert [e["image_id"] for e in examples] == list(range(len(examples)))


@pytest.mark.parametrize("variant", ["single", "multi"])
def test_examples_are_the_generator_scenes_and_fields_agree(variant, tfds_data_dir):
    """image_id i is generate_example(.., i); boxes are the tight boxes of the masks; the segmentation is
    the instance masks painted in order with class + 1; masks are disjoint and non-empty."""
    examples, _ = load_all(shapes_config(variant, tfds_data_dir), "test")
    seed = shapes_builder._SPLIT_SEEDS[(variant, "test")]
    for example in examples:
        reference = shapes.generate_example(shapes.VARIANTS[variant], seed, int(example["image_id"]))
        np.testing.assert_array_equal(example["image"], reference["image"])
        np.testing.assert_array_equal(example["classes"], reference["classes"])
        np.testing.assert_array_equal(example["boxes"], reference["boxes"])
        assert example["label"] == reference["label"]
        assert not example["is_crowd"].any()

        masks = example["masks"]
        assert set(np.unique(masks)) <= {0, 1}
        assert masks.sum(axis=0).max() <= 1, "visible masks overlap"
        painted = np.zeros(masks.shape[1:], np.uint8)
        for mask, box, class_id in zip(masks, example["boxes"], example["classes"]):
            rows, cols = np.nonzero(mask)
            assert len(rows) > 0
            np.testing.assert_array_equal(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            painted[mask == 1] = class_id + 1
        np.testing.assert_array_equal(example["segmentation"], painted)


def test_generation_is_deterministic_across_data_dirs(tmp_path, single_shapes_config):
    """Two independent generations into fresh data_dirs give identical data, equal to the session's."""
    config = ml_collections.ConfigDict({"name": "shapes", "data_dir": None, "shapes_variant": "single",
                                        "shapes_num_train": 6, "shapes_num_test": 2})
    runs = []
    for folder in ("a", "b"):
        config.data_dir = str(tmp_path / folder)
        runs.append(load_all(config, "train")[0])
    session_examples = load_all(single_shapes_config, "train")[0][:6]  # example i does not depend on split size
    for first, second, third in zip(*runs, session_examples):
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
            np.testing.assert_array_equal(first[key], third[key], err_msg=key)


@pytest.mark.parametrize("split,process_count", [("train", 2), ("train", 3), ("train", 5), ("train[10:50]", 3)])
def test_process_shards_are_tfds_even_splits_with_global_ids(split, process_count, single_shapes_config):
    """Process p's examples are tfds.even_splits(split, n)[p]; image ids number the whole (sliced) split."""
    datasets.load(single_shapes_config, "train")  # generates the data if no test did yet
    builder = shapes_builder.make_builder("single", *SMALL_SHAPES["single"], single_shapes_config.data_dir)
    split_size = builder.info.splits[split].num_examples
    all_ids = []
    for process_index in range(process_count):
        examples, info = load_all(single_shapes_config, split, process_index=process_index, process_count=process_count)
        reference = list(builder.as_dataset(split=tfds.even_splits(split, process_count)[process_index]).as_numpy_iterator())
        assert len(examples) == len(reference)
        for example, ref in zip(examples, reference):
            np.testing.assert_array_equal(example["image"], ref["image"])
        all_ids += [int(e["image_id"]) for e in examples]
    assert sorted(all_ids) == list(range(split_size))
    assert info.num_examples["train"] == SMALL_SHAPES["single"][0]


def test_bad_variant_and_split_are_refused(tfds_data_dir):
    config = shapes_config("single", tfds_data_dir)
    config.shapes_variant = "tiny"
    with pytest.raises(ValueError, match=r"unknown shapes_variant 'tiny'; known: \['multi', 'single'\]"):
        datasets.load(config, "train")
    with pytest.raises(ValueError, match=r"split 'validation' not found in dataset 'shapes'; available splits: \['train', 'test'\]"):
        datasets.load(shapes_config("single", tfds_data_dir), "validation")
    with pytest.raises(ValueError, match=r"process_index=2 must be in \[0, process_count=2\)"):
        datasets.load(shapes_config("single", tfds_data_dir), "train", process_index=2, process_count=2)


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset name 'coco_typo' \(config key data.name\); known: ") as error:
        datasets.load(ml_collections.ConfigDict({"name": "coco_typo"}), "train")
    assert str(sorted(datasets.LOADERS)) in str(error.value)
    assert {"shapes", "fashion_mnist_local", "mnist", "fashion_mnist", "cifar10", "imagenet2012", "image_folder"} <= set(datasets.LOADERS)

"""mask_folder (the user's own images + PNG masks) and oxford_iiit_pet (tfds mock data) through
datasets.load, against the files / raw examples read with PIL and NumPy."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from vision_jax.data import datasets


def write_mask_folder(
    root, rng, splits=("train", "val"), num_per_split=3, num_classes=4, classes_txt=None, palette=False
):
    """Writes root/<split>/images/*.png|jpg and masks/*.png of random sizes; returns {split: [(image, mask)]}."""
    written = {}
    for split in splits:
        os.makedirs(os.path.join(root, split, "images"))
        os.makedirs(os.path.join(root, split, "masks"))
        written[split] = []
        for index in range(num_per_split):
            height, width = rng.integers(10, 30, size=2)
            image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            mask = rng.integers(0, num_classes, size=(height, width)).astype(np.uint8)
            mask[rng.uniform(size=mask.shape) < 0.1] = 255
            name = f"{split}_{index:03d}"
            Image.fromarray(image).save(os.path.join(root, split, "images", name + ".png"))
            mask_image = Image.fromarray(mask, mode="L")
            if palette:  # VOC style: palette indices are the class ids, colours are arbitrary
                mask_image = mask_image.convert("P")
                mask_image.putpalette(list(rng.integers(0, 256, size=768)))
            mask_image.save(os.path.join(root, split, "masks", name + ".png"))
            written[split].append((image, mask))
    if classes_txt is not None:
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("\n".join(classes_txt) + "\n")
    return written


def load(root, split, **kwargs):
    config = ml_collections.ConfigDict({"name": "mask_folder", "root": str(root), "data_dir": None})
    ds, info = datasets.load(config, split, **kwargs)
    return list(ds.as_numpy_iterator()), info


@pytest.mark.parametrize("palette", [False, True])
def test_mask_folder_examples_equal_the_files(tmp_path, seed, palette):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 7))
    written = write_mask_folder(tmp_path, rng, num_classes=num_classes, palette=palette)
    # Scanned class count: the largest value over every split's masks, + 1.
    largest = max(int(m[m != 255].max()) for split in written.values() for _, m in split)
    examples, info = load(tmp_path, "val")
    assert info.segmentation_class_names == tuple(f"class_{k}" for k in range(largest + 1)), f"seed={seed}"
    assert info.has == {"segmentation"} and info.num_examples == {"train": 3, "val": 3}
    assert [int(e["image_id"]) for e in examples] == [0, 1, 2]
    for example, (image, mask) in zip(examples, written["val"]):
        np.testing.assert_array_equal(example["image"], image)
        np.testing.assert_array_equal(example["segmentation"], mask)
        assert example["segmentation"].dtype == np.uint8


def test_mask_folder_class_names_from_classes_txt_and_process_shards(tmp_path, seed):
    rng = np.random.default_rng(seed)
    names = ["background", "road", "car", "sky", "tree"]
    write_mask_folder(tmp_path, rng, splits=("train", "test"), num_per_split=5, num_classes=3, classes_txt=names)
    parts = [load(tmp_path, "train", process_index=p, process_count=2) for p in range(2)]
    info = parts[0][1]
    assert info.segmentation_class_names == tuple(names) and info.class_names == tuple(names[1:])
    ids = sorted(int(e["image_id"]) for examples, _ in parts for e in examples)
    assert ids == list(range(5)) and len(parts[0][0]) == 3 and len(parts[1][0]) == 2
    # 'val' finds the test/ folder when it is the only evaluation split.
    examples, _ = load(tmp_path, "val")
    assert len(examples) == 5


def test_mask_folder_reports_problems_by_file(tmp_path, seed):
    rng = np.random.default_rng(seed)
    write_mask_folder(tmp_path, rng, splits=("train",), num_classes=4, classes_txt=["a", "b"])
    # Checked when the mask is read (tf.data raises the loader's ValueError as an OpError).
    with pytest.raises(tf.errors.OpError, match=r"train_000\.png has value [23] .* there are 2 classes"):
        load(tmp_path, "train")
    with pytest.raises(ValueError, match="split 'test' not found"):
        load(tmp_path, "test")
    os.remove(tmp_path / "train" / "masks" / "train_001.png")
    with pytest.raises(ValueError, match=r"no mask in .*train_001"):
        load(tmp_path, "train")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "train" / "masks" / "train_001.png")
    with pytest.raises(ValueError, match="train_001.png must be an 8-bit single-channel PNG"):
        load(tmp_path, "train")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "train" / "masks" / "train_001.png")
    with pytest.raises(ValueError, match=r"train_001.png is 3x3 \(WxH\) but its image"):
        load(tmp_path, "train")
    with pytest.raises(ValueError, match="is not a folder"):
        load(tmp_path / "nowhere", "train")


def test_oxford_pet_trimaps_map_to_background_pet_and_ignore(tmp_path, seed):
    num_mock = 2 + seed % 3
    config = ml_collections.ConfigDict({"name": "oxford_iiit_pet", "data_dir": str(tmp_path)})
    with tfds.testing.mock_data(num_examples=num_mock):
        ds, info = datasets.load(config, "test")
        examples = list(ds.as_numpy_iterator())
        raw = list(tfds.load("oxford_iiit_pet", split="test", data_dir=str(tmp_path)).as_numpy_iterator())
    assert info.segmentation_class_names == ("background", "pet") and info.has == {"segmentation"}
    assert len(examples) == len(raw) == num_mock
    for example, source in zip(examples, raw):
        trimap = source["segmentation_mask"][..., 0]
        expected = np.full(trimap.shape, 255, np.uint8)
        expected[trimap == 1] = 1  # pet
        expected[trimap == 2] = 0  # background
        np.testing.assert_array_equal(example["segmentation"], expected)
        np.testing.assert_array_equal(example["image"], source["image"])

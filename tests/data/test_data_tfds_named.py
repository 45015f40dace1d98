"""tfds catalogue datasets through load(), with tfds.testing.mock_data (no download)."""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vision_jax.data import datasets

# name, split, image size (None = variable), grayscale on disk, number of classes, a known class name
CASES = [
    ("mnist", "train", (28, 28), True, 10, "7"),
    ("fashion_mnist", "test", (28, 28), True, 10, "Ankle boot"),
    # cifar10's builder reads its class names from the downloaded files, so mock data has '0'..'9'.
    ("cifar10", "train", (32, 32), False, 10, "9"),
    ("imagenet2012", "validation", None, False, 1000, "n01440764"),
]


@pytest.mark.parametrize("name,split,size,grayscale,num_classes,class_name", CASES)
def test_mock_examples_become_canonical(name, split, size, grayscale, num_classes, class_name, tmp_path, seed):
    num_mock = 3 + seed % 4  # mock_data yields this many examples for every split and process
    config = ml_collections.ConfigDict({"name": name, "root": None, "data_dir": str(tmp_path)})
    with tfds.testing.mock_data(num_examples=num_mock):
        shards = [datasets.load(config, split, process_index=p, process_count=2) for p in range(2)]
        examples = [list(ds.as_numpy_iterator()) for ds, _ in shards]
    info = shards[0][1]
    assert info.num_classes == num_classes and len(info.class_names) == num_classes
    assert class_name in info.class_names
    assert info.has == {"label"}
    assert info.num_examples == {split: num_mock}
    expected_shape = (size or (None, None)) + (3,)
    assert info.image_shape == expected_shape
    for example in examples[0] + examples[1]:
        assert set(example) == {"image", "image_id", "label"}
        image = example["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        if size is not None:
            assert image.shape[:2] == size
        if grayscale:  # one stored channel, tiled
            np.testing.assert_array_equal(image[..., 0], image[..., 1])
            np.testing.assert_array_equal(image[..., 0], image[..., 2])
        assert example["label"].dtype == np.int64 and 0 <= example["label"] < num_classes
    # Process 1's ids start after process 0's part (mock data gives each part num_mock examples).
    ids = [[int(e["image_id"]) for e in shard] for shard in examples]
    assert ids == [list(range(num_mock)), list(range(num_mock, 2 * num_mock))]


def test_unprepared_dataset_without_download_is_refused(tmp_path):
    config = ml_collections.ConfigDict({"name": "mnist", "data_dir": str(tmp_path), "download": False})
    with pytest.raises(ValueError, match=r"tfds dataset 'mnist' is not prepared in data_dir .* and download=False"):
        datasets.load(config, "train")

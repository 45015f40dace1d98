"""Fashion-MNIST from the Debian package's IDX files through load(): counts, labels, pixel statistics."""
from __future__ import annotations

import gzip
import os

import ml_collections
import numpy as np
import pytest

from vision_jax.data import datasets
from vision_jax.data import fashion_mnist_local

# Published facts about Fashion-MNIST (Xiao et al. 2017 and its README): 60000 train / 10000 test
# 28x28 images, 6000 / 1000 per class; train pixels scaled to [0, 1] have mean 0.2860 and std 0.3530
# (the normalisation constants everyone uses; 72.94 / 255 = 0.2860).
TRAIN_MEAN, TRAIN_STD = 0.2860, 0.3530

needs_debian_files = pytest.mark.skipif(
    not os.path.isdir(fashion_mnist_local.DEFAULT_ROOT),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def fashion_config(tfds_data_dir) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"name": "fashion_mnist_local", "root": None, "data_dir": tfds_data_dir})


@needs_debian_files
@pytest.mark.parametrize("split,count", [("train", 60_000), ("test", 10_000)])
def test_counts_labels_and_pixel_statistics(split, count, fashion_config):
    ds, info = datasets.load(fashion_config, split)
    assert info.num_examples == {"train": 60_000, "test": 10_000}
    assert info.image_shape == (28, 28, 3) and info.num_classes == 10 and info.class_names[9] == "Ankle boot"
    labels, ids, pixel_sum, pixel_square_sum = [], [], 0.0, 0.0
    for batch in ds.batch(5_000).as_numpy_iterator():
        images = batch["image"]
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 3)
        np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grayscale tiled
        gray = images[..., 0].astype(np.float64) / 255.0
        pixel_sum += gray.sum()
        pixel_square_sum += (gray**2).sum()
        labels.append(batch["label"])
        ids.append(batch["image_id"])
    labels = np.concatenate(labels)
    assert len(labels) == count
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [count // 10] * 10)
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(count))
    if split == "train":
        num_pixels = count * 28 * 28
        mean = pixel_sum / num_pixels
        std = np.sqrt(pixel_square_sum / num_pixels - mean**2)
        assert abs(mean - TRAIN_MEAN) < 5e-4 and abs(std - TRAIN_STD) < 5e-4, (mean, std)


@needs_debian_files
def test_images_equal_the_raw_idx_bytes(fashion_config, rng, seed):
    """A random process shard's examples equal the bytes at the same positions of the gzipped file
    (read here with gzip alone: 16-byte header, then 784 bytes an image)."""
    process_count = int(rng.integers(2, 6))
    process_index = int(rng.integers(process_count))
    ds, _ = datasets.load(fashion_config, "test", process_index=process_index, process_count=process_count)
    with gzip.open(os.path.join(fashion_mnist_local.DEFAULT_ROOT, "t10k-images-idx3-ubyte.gz")) as f:
        raw_images = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
    with gzip.open(os.path.join(fashion_mnist_local.DEFAULT_ROOT, "t10k-labels-idx1-ubyte.gz")) as f:
        raw_labels = np.frombuffer(f.read()[8:], np.uint8)
    examples = list(ds.take(50).as_numpy_iterator())
    # tfds.even_splits gives each of n shards 10000 // n examples and the first 10000 % n shards one
    # more (3 shards: 3334, 3333, 3333), so process p starts here:
    size, extra = divmod(10_000, process_count)
    first = process_index * size + min(process_index, extra)
    assert int(examples[0]["image_id"]) == first, f"process {process_index} of {process_count}, seed={seed}"
    for example in examples:
        i = int(example["image_id"])
        np.testing.assert_array_equal(example["image"][..., 1], raw_images[i], err_msg=f"id {i} seed={seed}")
        assert example["label"] == raw_labels[i]


def test_missing_files_name_the_debian_package(tmp_path):
    config = ml_collections.ConfigDict({"name": "fashion_mnist_local", "root": str(tmp_path), "data_dir": str(tmp_path / "tfds")})
    with pytest.raises(ValueError, match=r"Fashion-MNIST files not found in .*: install the Debian package "
                                         r"dataset-fashion-mnist \(apt-get install dataset-fashion-mnist\) or set --config.data.root"):
        datasets.load(config, "train")


def test_corrupt_idx_file_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write((2049).to_bytes(4, "big") + b"\x00" * 20)  # a labels magic number in an images file
    with pytest.raises(ValueError, match=r"not an IDX uint8 file with 3 dims \(magic 2049, expected 2051\)"):
        fashion_mnist_local.read_idx(str(path), 3)

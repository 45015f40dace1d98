"""Fashion-MNIST from local IDX files (the Debian package `dataset-fashion-mnist`), as a tfds builder.

The Debian package installs the original files of Zalando Research's release in
/usr/share/datasets/fashion-mnist/: `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (60000 train and 10000 test 28x28 grayscale
images). `data_config.root` points elsewhere (a folder with the same four files, gzipped or not).

The builder copies them once into `data_dir/vision_jax_fashion_mnist/1.0.0/` as tfrecords (a few
seconds), keeping the files' order; the splits are `train` and `test`.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {  # split -> (images file, labels file), names of the original release
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 2051, 1: 2049}  # IDX magic number of uint8 arrays with 3 dims (images) and 1 (labels)


def _find(root: str, stem: str) -> str:
    """Path of `stem.gz` or `stem` in root; ValueError saying how to get the files if neither exists."""
    for candidate in (os.path.join(root, stem + ".gz"), os.path.join(root, stem)):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(
        f"Fashion-MNIST files not found in {root}: install the Debian package dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist) or set --config.data.root to a folder holding "
        f"{', '.join(f + '.gz' for pair in _FILES.values() for f in pair)} ({stem}.gz is missing)"
    )


def read_idx(path: str, expected_dims: int) -> np.ndarray:
    """Reads an IDX file of uint8 (optionally gzipped) into a uint8 array of its stored shape.

    IDX layout: big-endian int32 magic (0x0000 08 <dims>), then one big-endian int32 per dimension,
    then the data in C order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic != _IDX_MAGIC[expected_dims]:
        raise ValueError(f"{path}: not an IDX uint8 file with {expected_dims} dims (magic {magic}, expected {_IDX_MAGIC[expected_dims]})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * expected_dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def read_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of `split` ('train' or 'test') from the files."""
    images_stem, labels_stem = _FILES[split]
    images = read_idx(_find(root, images_stem), 3)
    labels = read_idx(_find(root, labels_stem), 1)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {split} has {len(images)} images but {len(labels)} labels")
    return images, labels


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """tfds builder over local Fashion-MNIST IDX files (no download)."""

    name = "vision_jax_fashion_mnist"
    # No download, so no checksums file to look up next to this code (that look-up needs the optional
    # package importlib_resources).
    code_path = None
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "From the IDX files of the original release."}

    def __init__(self, *, source_root: str = DEFAULT_ROOT, **kwargs):
        self._source_root = source_root
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                # Raw bytes: 784 bytes an image is small, and encoding 70000 PNGs would take a minute.
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            }),
            disable_shuffling=True,  # keep the files' order
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in _FILES}

    def _generate_examples(self, split: str):
        images, labels = read_split(self._source_root, split)
        for index in range(len(images)):
            yield index, {"image": images[index][..., None], "label": int(labels[index])}


def _to_canonical(example: dict) -> dict:
    return {
        "image": tf.tile(example["image"], [1, 1, 3]),  # grayscale -> 3 equal channels
        "image_id": example["image_id"],
        "label": example["label"],
    }


def load_fashion_mnist_local(data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'fashion_mnist_local'. data_config keys: root (folder with the IDX files, default
    /usr/share/datasets/fashion-mnist), data_dir (where the tfrecords go; None = tfds default)."""
    root = data_config.get("root") or DEFAULT_ROOT
    builder = FashionMnistLocal(source_root=root, data_dir=data_config.get("data_dir"))
    if not builder.is_prepared():
        for images_stem, labels_stem in _FILES.values():  # fail early with the install hint
            _find(root, images_stem)
            _find(root, labels_stem)
    tfds_reading.prepare(builder, what_to_do=f"Check the IDX files in {root} and that data_dir is writable.")
    tfds_reading.check_split(builder, split, "fashion_mnist_local")
    ds = tfds_reading.read_process_shard(builder, split, process_index=process_index, process_count=process_count)
    ds = ds.map(_to_canonical, num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="fashion_mnist_local",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        num_examples={s: builder.info.splits[s].num_examples for s in tfds_reading.split_names(builder)},
        image_shape=(28, 28, 3),
        has=frozenset({"label"}),
    )
    return ds, info

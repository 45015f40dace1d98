"""Image-classification datasets from the tfds catalogue, by name: mnist, fashion_mnist, cifar10, imagenet2012.

They need their tfds data: downloaded and prepared on first use when the machine is online (tfds does
it into `data_config.data_dir`, default ~/tensorflow_datasets), or prepared elsewhere and copied there.
imagenet2012 cannot be downloaded by tfds: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
`<data_dir>/downloads/manual/` first (see the tfds catalogue page). Its evaluation split is 'validation'.

Each example becomes a canonical example: image uint8 [H, W, 3] (grayscale tiled), label, image_id.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

CLASSIFICATION_NAMES = ("mnist", "fashion_mnist", "cifar10", "imagenet2012")


def _to_canonical(example: dict) -> dict:
    image = example["image"]
    if image.shape[-1] == 1:
        image = tf.tile(image, [1, 1, 3])
    return {"image": image, "image_id": example["image_id"], "label": example["label"]}


def load_tfds_classification(name: str, data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for a tfds image-classification dataset `name`. data_config keys: data_dir (None = tfds
    default), download (bool, default True: let tfds download and prepare missing data)."""
    if name not in CLASSIFICATION_NAMES:
        raise ValueError(f"unknown tfds classification dataset {name!r}; known: {CLASSIFICATION_NAMES}")
    builder = tfds.builder(name, data_dir=data_config.get("data_dir"))
    if data_config.get("download", True):
        tfds_reading.prepare(
            builder,
            what_to_do=(
                f"Without internet, prepare it on a machine with internet (`tfds build {name}`) and copy "
                f"{builder.name}/ into data_dir; imagenet2012 needs its tar files in <data_dir>/downloads/manual/."
            ),
        )
    elif not builder.is_prepared():
        raise ValueError(f"tfds dataset {name!r} is not prepared in data_dir {builder.data_dir} and download=False")
    tfds_reading.check_split(builder, split, name)
    ds = tfds_reading.read_process_shard(builder, split, process_index=process_index, process_count=process_count)
    ds = ds.map(_to_canonical, num_parallel_calls=tf.data.AUTOTUNE)

    features = builder.info.features
    height, width, _ = features["image"].shape
    known_splits = tfds_reading.split_names(builder)
    # Under tfds.testing.mock_data no split metadata exists: count the requested split instead.
    num_examples = (
        {s: builder.info.splits[s].num_examples for s in known_splits}
        if known_splits
        else {split: tfds_reading.split_size(builder, split)}
    )
    class_names = tuple(features["label"].names)
    info = DatasetInfo(
        name=name,
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_shape=(height, width, 3),
        has=frozenset({"label"}),
    )
    return ds, info

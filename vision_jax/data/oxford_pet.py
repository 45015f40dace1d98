"""Oxford-IIIT Pet (tfds `oxford_iiit_pet`, splits 'train' 3680 / 'test' 3669) as semantic segmentation.

The dataset's trimaps (`segmentation_mask`, uint8 [H, W, 1]) mark every pixel 1 = pet, 2 = background,
3 = border (the uncertain band along the pet's outline). The canonical `segmentation` maps them to

    trimap 1 (pet)        -> 1  'pet'
    trimap 2 (background) -> 0  'background'
    trimap 3 (border)     -> 255 ignore (neither trained on nor scored, like VOC's void band)
    any other value       -> 255 ignore (real trimaps have none; tfds's mock data does)

so `segmentation_class_names` = ('background', 'pet') and `class_names` = ('pet',) (the breed label
is not part of this canonical view). The data needs tfds's download (on first use, into
`data_config.data_dir`), or a prepared copy there when offline (`tfds build oxford_iiit_pet`).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import SEGMENTATION_IGNORE_VALUE, DatasetInfo

NAME = "oxford_iiit_pet"
SEGMENTATION_CLASS_NAMES = ("background", "pet")
# TRIMAP_TO_CLASS[v] = canonical class of trimap value v (0..255).
TRIMAP_TO_CLASS = tuple({1: 1, 2: 0}.get(v, SEGMENTATION_IGNORE_VALUE) for v in range(256))


def trimap_to_segmentation(trimap: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 1] or [H, W] trimap -> uint8 [H, W] canonical classes (module docstring)."""
    if trimap.shape.rank == 3:
        trimap = trimap[..., 0]
    table = tf.constant(TRIMAP_TO_CLASS, tf.uint8)
    return tf.gather(table, tf.cast(trimap, tf.int32))


def _to_canonical(example: dict) -> dict:
    return {
        "image": example["image"],
        "image_id": example["image_id"],
        "segmentation": trimap_to_segmentation(example["segmentation_mask"]),
    }


def load_oxford_pet(
    data_config, split: str, *, process_index: int, process_count: int
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'oxford_iiit_pet'. data_config keys: data_dir (None = tfds default), download
    (bool, default True)."""
    builder = tfds.builder(NAME, data_dir=data_config.get("data_dir"))
    if data_config.get("download", True):
        tfds_reading.prepare(
            builder,
            what_to_do=f"Without internet, prepare it on a machine with internet (`tfds build {NAME}`) and copy "
            f"{builder.name}/ into data_dir.",
        )
    elif not builder.is_prepared():
        raise ValueError(f"tfds dataset {NAME!r} is not prepared in data_dir {builder.data_dir} and download=False")
    tfds_reading.check_split(builder, split, NAME)
    ds = tfds_reading.read_process_shard(builder, split, process_index=process_index, process_count=process_count)
    ds = ds.map(_to_canonical, num_parallel_calls=tf.data.AUTOTUNE)
    known_splits = tfds_reading.split_names(builder)
    num_examples = (
        {s: builder.info.splits[s].num_examples for s in known_splits}
        if known_splits
        else {split: tfds_reading.split_size(builder, split)}
    )
    info = DatasetInfo(
        name=NAME,
        num_classes=1,
        class_names=SEGMENTATION_CLASS_NAMES[1:],
        num_examples=num_examples,
        image_shape=(None, None, 3),
        has=frozenset({"segmentation"}),
        segmentation_class_names=SEGMENTATION_CLASS_NAMES,
    )
    return ds, info

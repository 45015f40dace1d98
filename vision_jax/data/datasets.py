"""`load(data_config, split)`: one process's shard of a dataset split as canonical examples.

The one table `LOADERS` maps a config's `data.name` to its loader. Names and the data_config keys each
reads (every loader also reads `data_dir`, the tfds data folder; None = tfds's default):

| name                  | data                                                | keys                                   |
| --------------------- | --------------------------------------------------- | -------------------------------------- |
| `shapes`              | generated scenes of shapes (shapes_builder.py)      | shapes_variant, shapes_num_train, shapes_num_test |
| `fashion_mnist_local` | Fashion-MNIST from the Debian package's IDX files   | root (default /usr/share/datasets/fashion-mnist) |
| `mnist`, `fashion_mnist`, `cifar10`, `imagenet2012` | tfds catalogue (tfds_named.py) | download (default True)       |
| `image_folder`        | the user's `root/<split>/<class>/*.jpg|png`         | root (required)                        |
| `mask_folder`         | the user's `root/<split>/{images,masks}/` (mask_folder.py) | root (required)                 |
| `oxford_iiit_pet`     | tfds pets, trimaps as background/pet/ignore (oxford_pet.py) | download (default True)        |
| `coco/2017`, `voc/2007`, `voc/2012` | tfds detection catalogue (detection_tfds.py) | download (default True)      |
| `coco_json`           | the user's `root/<split>.json` (COCO) + `root/<split>/` images (coco_json.py) | root (required), with_masks |

Canonical examples and `DatasetInfo` are defined in dataset_info.py.
"""

from __future__ import annotations

import functools
from typing import Callable

import ml_collections
import tensorflow as tf

from vision_jax.data import coco_json
from vision_jax.data import detection_tfds
from vision_jax.data import fashion_mnist_local
from vision_jax.data import image_folder
from vision_jax.data import mask_folder
from vision_jax.data import oxford_pet
from vision_jax.data import shapes_builder
from vision_jax.data import tfds_named
from vision_jax.data.dataset_info import DatasetInfo

__all__ = ["DatasetInfo", "LOADERS", "load"]

Loader = Callable[..., tuple[tf.data.Dataset, DatasetInfo]]

LOADERS: dict[str, Loader] = {
    "shapes": shapes_builder.load_shapes,
    "fashion_mnist_local": fashion_mnist_local.load_fashion_mnist_local,
    **{name: functools.partial(tfds_named.load_tfds_classification, name) for name in tfds_named.CLASSIFICATION_NAMES},
    "image_folder": image_folder.load_image_folder,
    "coco/2017": functools.partial(detection_tfds.load_tfds_detection, "coco/2017"),
    "voc/2007": functools.partial(detection_tfds.load_tfds_detection, "voc/2007"),
    "voc/2012": functools.partial(detection_tfds.load_tfds_detection, "voc/2012"),
    "coco_json": coco_json.load_coco_json,
    "mask_folder": mask_folder.load_mask_folder,
    "oxford_iiit_pet": oxford_pet.load_oxford_pet,
}


def load(
    data_config: ml_collections.ConfigDict,
    split: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Returns (this process's shard of `split`, the dataset's info).

    The dataset is neither shuffled nor batched nor repeated; its order is the same on every run.
    Process `i` of `n` gets a contiguous part (tfds datasets, via tfds.even_splits) or every n-th
    example (image_folder); the parts are disjoint, cover the split and differ in size by at most one.

    Raises ValueError for an unknown name (listing the known ones), a missing split, or missing files.
    """
    name = data_config.get("name")
    if name not in LOADERS:
        raise ValueError(f"unknown dataset name {name!r} (config key data.name); known: {sorted(LOADERS)}")
    return LOADERS[name](data_config, split, process_index=process_index, process_count=process_count)

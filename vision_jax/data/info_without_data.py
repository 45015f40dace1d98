"""A dataset's `DatasetInfo` (classes, fields) without its data, for predictions on a user's images.

`scripts/predict.py --images` needs the class names and the fields a task requires, not one
example. They come from, in this order:

1. the run's workdir: `dataset_info.json`, which the train loop writes when a run starts
   (`write_info` / `read_info`);
2. what this code knows of a dataset by name (`known_info`): the generated shapes, ImageNet-1k
   (vision_jax/data/imagenet_classes.txt), Fashion-MNIST, Oxford-IIIT Pet, and the tfds catalogue
   datasets whose builders carry their label names in code (MNIST, CIFAR-10, VOC, COCO);
3. otherwise (a user's folder): the dataset's loader on its eval split, whose info lists the class
   folders (`info_for_prediction` says so in the error if that fails).

`num_examples` of an info made here is empty: nothing was counted.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections

from vision_jax.data.dataset_info import DatasetInfo

INFO_FILE = "dataset_info.json"


def write_info(workdir: str, info: DatasetInfo) -> None:
    """`workdir/dataset_info.json`: the info's names and fields (what predictions need)."""
    record = {
        "name": info.name,
        "class_names": list(info.class_names),
        "has": sorted(info.has),
        "segmentation_class_names": list(info.segmentation_class_names),
        "image_shape": list(info.image_shape),
    }
    tmp = os.path.join(workdir, f".{INFO_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(workdir, INFO_FILE))


def read_info(workdir: str) -> DatasetInfo | None:
    path = os.path.join(workdir, INFO_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return DatasetInfo(
        name=record["name"],
        num_classes=len(record["class_names"]),
        class_names=tuple(record["class_names"]),
        num_examples={},
        image_shape=tuple(record["image_shape"]),
        has=frozenset(record["has"]),
        segmentation_class_names=tuple(record["segmentation_class_names"]),
    )


def _info(name, class_names, has, segmentation_class_names=()) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        num_classes=len(class_names),
        class_names=tuple(class_names),
        num_examples={},
        image_shape=(None, None, 3),
        has=frozenset(has),
        segmentation_class_names=tuple(segmentation_class_names),
    )


def known_info(data_config: ml_collections.ConfigDict) -> DatasetInfo | None:
    """The info of `data_config.name` from code alone, or None when only its data can tell."""
    name = data_config.name
    if name == "shapes":
        from vision_jax.data import shapes

        variant = data_config.get("shapes_variant", "single")
        return _info(
            f"shapes/{variant}", shapes.SHAPE_CLASS_NAMES, {"label", "boxes", "masks", "segmentation"},
            ("background",) + tuple(shapes.SHAPE_CLASS_NAMES),
        )
    if name == "imagenet2012":
        from vision_jax.data.imagenet_classes import imagenet_class_names

        return _info(name, imagenet_class_names(), {"label"})
    if name == "fashion_mnist_local":
        from vision_jax.data.fashion_mnist_local import CLASS_NAMES

        return _info(name, CLASS_NAMES, {"label"})
    if name == "oxford_iiit_pet":
        from vision_jax.data.oxford_pet import SEGMENTATION_CLASS_NAMES

        return _info(name, SEGMENTATION_CLASS_NAMES[1:], {"segmentation"}, SEGMENTATION_CLASS_NAMES)
    catalogue = {"mnist": ("label",), "fashion_mnist": ("label",), "cifar10": ("label",),
                 "coco/2017": ("objects", "label"), "voc/2007": ("objects", "label"), "voc/2012": ("objects", "label")}
    if name in catalogue:
        import tensorflow_datasets as tfds

        try:
            features = tfds.builder(name, data_dir=data_config.get("data_dir")).info.features
            for key in catalogue[name]:
                features = features[key]
        except Exception:  # noqa: BLE001 (a builder that needs its files: fall through to the data)
            return None
        return _info(name, features.names, {"label"} if name in ("mnist", "fashion_mnist", "cifar10") else {"boxes"})
    return None


def info_for_prediction(data_config: ml_collections.ConfigDict, workdir: str | None) -> tuple[DatasetInfo, str]:
    """(info, where it came from) by the order of the module docstring."""
    if workdir:
        info = read_info(workdir)
        if info is not None:
            return info, os.path.join(workdir, INFO_FILE)
    info = known_info(data_config)
    if info is not None:
        return info, f"the class names this code knows for data.name={data_config.name!r}"
    from vision_jax.data import datasets

    try:
        _, info = datasets.load(data_config, data_config.eval_split)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(
            f"the class names of data.name={data_config.name!r} are known only from its data, which could not be "
            f"read ({error}); pass the --workdir of a run (its {INFO_FILE}) or set data.root"
        ) from None
    return dataclasses.replace(info, num_examples={}), f"the {data_config.eval_split!r} split of {data_config.name!r}"

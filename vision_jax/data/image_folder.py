"""A user's own classification images in tfds's ImageFolder layout: `root/<split>/<class name>/<image>`.

```
root/
  train/
    cat/  001.jpg  002.png ...
    dog/  ...
  val/
    cat/ ...
```
Class names are the union of the class folder names over all splits, sorted, so a class id means the
same thing in every split (as `tfds.ImageFolder` does). Images are .jpg/.jpeg/.png files (any case);
grayscale and RGBA images become RGB. Examples are listed sorted by (class, file name); `image_id` is
the position in that list. 'val', 'validation' and 'test' stand in for one another when only one of
them exists (logged), so a config's default eval split ('test') finds a folder called val/.

The files are read and decoded lazily by tf.data. At load time each file of this process's shard gets
image_files.py's cheap check (signature and end of file; a full decode only for a file that does not
end as a JPEG/PNG ends), so a truncated or non-image file is reported by path before training starts;
a file that still fails to decode fails the pipeline with an error naming it.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from vision_jax.data import image_files, tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_ALIASES = ("val", "validation", "test")
logger = logging.getLogger(__name__)


def _subfolders(path: str) -> list[str]:
    return sorted(name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name)))


def resolve_split(root: str, split: str) -> str:
    """The folder name of `split` under root (see the module docstring for val/validation/test)."""
    if not root or not os.path.isdir(root):
        raise ValueError(f"image_folder: root {root!r} is not a folder; set --config.data.root=DIR with DIR/<split>/<class>/*.jpg|png")
    splits = _subfolders(root)
    if split in splits:
        return split
    if split in SPLIT_ALIASES:
        stand_ins = [s for s in SPLIT_ALIASES if s in splits]
        if len(stand_ins) == 1:
            logger.warning("image_folder: split %r not found in %s; using %r instead", split, root, stand_ins[0])
            return stand_ins[0]
    raise ValueError(f"image_folder: split {split!r} not found in {root}; available splits: {splits}")


def list_images(root: str, split: str) -> tuple[list[str], list[int], tuple[str, ...], dict[str, int]]:
    """Lists a split. Returns (paths, labels, class_names, num_examples per split folder, plus `split`
    itself when a stand-in folder serves it).

    Raises ValueError when root is not a folder, the split is missing or a split has no images. The
    files are not opened here (load_image_folder checks them).
    """
    folder = resolve_split(root, split)
    splits = _subfolders(root)
    class_names = tuple(sorted({c for s in splits for c in _subfolders(os.path.join(root, s))}))
    per_split = {}
    for s in splits:
        files = []
        for label, class_name in enumerate(class_names):
            class_dir = os.path.join(root, s, class_name)
            if os.path.isdir(class_dir):
                files += [(os.path.join(class_dir, f), label) for f in sorted(os.listdir(class_dir))
                          if f.lower().endswith(IMAGE_EXTENSIONS)]
        per_split[s] = files
    files = per_split[folder]
    if not files:
        raise ValueError(
            f"image_folder: no images in {os.path.join(root, folder)}: expected {folder}/<class name>/*"
            f"{'|'.join(IMAGE_EXTENSIONS)} (class folders found: {_subfolders(os.path.join(root, folder))})"
        )
    paths, labels = [p for p, _ in files], [label for _, label in files]
    num_examples = {s: len(f) for s, f in per_split.items()}
    num_examples[split] = len(files)
    return paths, labels, class_names, num_examples


def load_image_folder(data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'image_folder'. data_config keys: root (required, the folder above the splits)."""
    tfds_reading.check_process(process_index, process_count)
    root = data_config.get("root")
    paths, labels, class_names, num_examples = list_images(root, split)
    # Every process keeps every process_count-th file: shards differ in size by at most one.
    positions = range(process_index, len(paths), process_count)
    shard_paths = [paths[i] for i in positions]
    image_files.check_files("image_folder", shard_paths)
    examples = tf.data.Dataset.from_tensor_slices({
        "label": tf.constant([labels[i] for i in positions], tf.int64),
        "image_id": tf.constant(list(positions), tf.int64),
    })
    images = image_files.decoded_images("image_folder", shard_paths)
    ds = tf.data.Dataset.zip(examples, images).map(lambda example, image: {"image": image, **example})
    info = DatasetInfo(
        name="image_folder",
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_shape=(None, None, 3),
        has=frozenset({"label"}),
    )
    return ds, info

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
the position in that list. The files are read and decoded lazily by tf.data; at load time every file's
first bytes are checked to be a JPEG or PNG signature, so an unreadable file is reported by name
before training starts.
"""

from __future__ import annotations

import os

import tensorflow as tf

from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG start-of-image, PNG file signature


def _subfolders(path: str) -> list[str]:
    return sorted(name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name)))


def list_images(root: str, split: str) -> tuple[list[str], list[int], tuple[str, ...], dict[str, int]]:
    """Lists a split. Returns (paths, labels, class_names, num_examples per split).

    Raises ValueError when root is not a folder, the split is missing, a split has no images, or a
    file is not a JPEG/PNG.
    """
    if not root or not os.path.isdir(root):
        raise ValueError(f"image_folder: root {root!r} is not a folder; set --config.data.root=DIR with DIR/<split>/<class>/*.jpg|png")
    splits = _subfolders(root)
    if split not in splits:
        raise ValueError(f"image_folder: split {split!r} not found in {root}; available splits: {splits}")
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
    files = per_split[split]
    if not files:
        raise ValueError(
            f"image_folder: no images in {os.path.join(root, split)}: expected {split}/<class name>/*"
            f"{'|'.join(IMAGE_EXTENSIONS)} (class folders found: {_subfolders(os.path.join(root, split))})"
        )
    for path, _ in files:
        with open(path, "rb") as f:
            head = f.read(8)
        if not any(head.startswith(signature) for signature in _SIGNATURES):
            raise ValueError(f"image_folder: {path} is not a readable JPEG or PNG image (first bytes {head!r})")
    paths, labels = [p for p, _ in files], [label for _, label in files]
    return paths, labels, class_names, {s: len(f) for s, f in per_split.items()}


def load_image_folder(data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'image_folder'. data_config keys: root (required, the folder above the splits)."""
    tfds_reading.check_process(process_index, process_count)
    root = data_config.get("root")
    paths, labels, class_names, num_examples = list_images(root, split)
    ds = tf.data.Dataset.from_tensor_slices({
        "path": tf.constant(paths),
        "label": tf.constant(labels, tf.int64),
        "image_id": tf.range(len(paths), dtype=tf.int64),
    })
    # Every process keeps every process_count-th file: shards differ in size by at most one.
    ds = ds.shard(process_count, process_index)

    def read(example):
        contents = tf.io.read_file(example["path"])
        # JPEGs with the accurate integer DCT (libjpeg's default, what Pillow gives) rather than TF's
        # default fast one, so pixels match what other tools decode.
        image = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_png(contents, channels=3),
        )
        image.set_shape([None, None, 3])
        return {"image": image, "image_id": example["image_id"], "label": example["label"]}

    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="image_folder",
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_shape=(None, None, 3),
        has=frozenset({"label"}),
    )
    return ds, info

"""A user's own semantic-segmentation data: images with PNG label masks of the same base name.

```
root/
  classes.txt              optional: line k is the name of class k (e.g. "background", "road", ...)
  train/
    images/  0001.jpg  0002.png ...      RGB, grayscale or RGBA (JPEG or PNG)
    masks/   0001.png  0002.png ...      one PNG per image, same base name, same size
  val/  (or test/)
    images/ ...  masks/ ...
```

Mask pixel value = class id (0, 1, ..., K-1); 255 = ignore (void, unlabelled, object borders), which
the loss and the metrics skip. Masks are 8-bit single-channel PNGs: grayscale ('L') or palette ('P',
as PASCAL VOC's SegmentationClass files: the palette index is the class id, the colours are not read).

Classes: from `root/classes.txt` when present (K = number of non-empty lines; a mask value >= K other
than 255 is an error naming the file, raised when that mask is read); otherwise K = 1 + the largest
value (other than 255) over the masks of every split, scanned once at load time, and the names are
"class_0" .. "class_{K-1}". At least two classes are needed. In `DatasetInfo`,
`segmentation_class_names` holds all K names; value 0 fills the canonical "background" slot, so
`class_names` = the names of values 1..K-1.

Splits are the folders of root that hold `images/`. 'val', 'validation' and 'test' stand in for one
another when only one of them exists (with a logged warning), so a config's default eval split
('test') finds a folder called val/. Examples are sorted by file name; `image_id` = position in that
order; process i of n keeps every n-th example. At load time every image must have a mask and every
mask an image, each mask must be an 8-bit PNG of its image's size (headers only are read), and every
image and mask gets image_files.py's cheap check (signature and end of file: a truncated file is
found without decoding the others), so problems are reported by file name before training. A file
that still fails when tf.data reads it fails the pipeline with an error naming it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from vision_jax.data import data_errors, image_files, tfds_reading
from vision_jax.data.dataset_info import SEGMENTATION_IGNORE_VALUE, DatasetInfo
from vision_jax.data.image_folder import IMAGE_EXTENSIONS

CLASSES_FILE = "classes.txt"
MASK_MODES = ("L", "P")
SPLIT_ALIASES = ("val", "validation", "test")
logger = logging.getLogger(__name__)


def _splits(root: str) -> list[str]:
    return sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name, "images")))


def resolve_split(root: str, split: str) -> str:
    """The folder name of `split` under root (see the module docstring for val/validation/test)."""
    if not root or not os.path.isdir(root):
        raise ValueError(
            f"mask_folder: root {root!r} is not a folder; set --config.data.root=DIR with "
            "DIR/<split>/images/* and DIR/<split>/masks/*.png"
        )
    available = _splits(root)
    if split in available:
        return split
    if split in SPLIT_ALIASES:
        stand_ins = [s for s in SPLIT_ALIASES if s in available]
        if len(stand_ins) == 1:
            logger.warning("mask_folder: split %r not found in %s; using %r instead", split, root, stand_ins[0])
            return stand_ins[0]
    raise ValueError(
        f"mask_folder: split {split!r} not found in {root} (a split is a folder holding images/); "
        f"available splits: {available}"
    )


def list_pairs(root: str, split: str) -> tuple[list[str], list[str]]:
    """(image paths, mask paths) of a split folder, sorted by base name; ValueError on unmatched files,
    non-image files, or masks that are not 8-bit PNGs of their image's size."""
    images_dir, masks_dir = os.path.join(root, split, "images"), os.path.join(root, split, "masks")
    if not os.path.isdir(masks_dir):
        raise ValueError(f"mask_folder: {masks_dir} is missing (masks go in <split>/masks/<image base name>.png)")
    images = {
        os.path.splitext(f)[0]: os.path.join(images_dir, f)
        for f in sorted(os.listdir(images_dir))
        if f.lower().endswith(IMAGE_EXTENSIONS)
    }
    masks = {
        os.path.splitext(f)[0]: os.path.join(masks_dir, f)
        for f in sorted(os.listdir(masks_dir))
        if f.lower().endswith(".png")
    }
    if not images:
        raise ValueError(f"mask_folder: no images ({'|'.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    for what, names, where in (
        ("mask", sorted(set(images) - set(masks)), masks_dir),
        ("image", sorted(set(masks) - set(images)), images_dir),
    ):
        if names:
            raise ValueError(f"mask_folder: no {what} in {where} for {len(names)} file(s), e.g. {names[:5]}")
    names = sorted(images)
    image_paths, mask_paths = [images[n] for n in names], [masks[n] for n in names]
    problems = [
        f"{path} {verdict.problem}"
        for paths in (image_paths, mask_paths)
        for path, verdict in zip(paths, image_files.inspect_files(paths))
        if verdict.problem
    ]
    image_files.raise_for_problems("mask_folder", problems, 2 * len(names))
    for image_path, mask_path in zip(image_paths, mask_paths):
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            if mask.format != "PNG" or mask.mode not in MASK_MODES:
                raise ValueError(
                    f"mask_folder: {mask_path} must be an 8-bit single-channel PNG (mode L or P), "
                    f"got format {mask.format} mode {mask.mode}"
                )
            if mask.size != image.size:
                raise ValueError(
                    f"mask_folder: {mask_path} is {mask.size[0]}x{mask.size[1]} (WxH) but its image "
                    f"{image_path} is {image.size[0]}x{image.size[1]}"
                )
    return image_paths, mask_paths


def _count_images(root: str, split: str) -> int:
    return sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(os.path.join(root, split, "images")))


def read_mask(path: str) -> np.ndarray:
    """uint8 [H, W] class ids of a mask PNG (palette indices for mode 'P'); ValueError naming the file
    when Pillow cannot decode it."""
    try:
        with Image.open(path) as mask:
            return np.asarray(mask, np.uint8)
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for a corrupt PNG
        raise ValueError(f"mask_folder: {path} cannot be decoded ({error}); fix or remove it") from error


def class_names_of(root: str) -> tuple[str, ...]:
    """From root/classes.txt, else by scanning every split's masks (module docstring)."""
    path = os.path.join(root, CLASSES_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            names = tuple(line.strip() for line in f if line.strip())
    else:
        largest = -1
        for split in _splits(root):
            for mask_path in list_pairs(root, split)[1]:
                values = np.unique(read_mask(mask_path))
                values = values[values != SEGMENTATION_IGNORE_VALUE]
                if values.size:
                    largest = max(largest, int(values.max()))
        names = tuple(f"class_{k}" for k in range(largest + 1))
    if len(names) < 2:
        raise ValueError(
            f"mask_folder: {root} has {len(names)} class(es) {list(names)}; segmentation needs at least "
            f"2 (give {CLASSES_FILE} or masks with values 0..K-1)"
        )
    if len(names) > SEGMENTATION_IGNORE_VALUE:
        raise ValueError(f"mask_folder: {len(names)} classes, but 8-bit masks hold at most 255 (255 = ignore)")
    return names


def _checked_mask(path: bytes, num_classes: np.ndarray) -> np.ndarray:
    try:
        mask = read_mask(path.decode())
    except ValueError as error:
        raise ValueError(data_errors.marked(str(error))) from None
    bad = (mask >= num_classes) & (mask != SEGMENTATION_IGNORE_VALUE)
    if bad.any():
        raise ValueError(data_errors.marked(
            f"mask_folder: {path.decode()} has value {int(mask[bad][0])} at {bad.sum()} pixel(s), "
            f"but there are {int(num_classes)} classes (0..{int(num_classes) - 1}, 255 = ignore)"
        ))
    return mask


def load_mask_folder(
    data_config, split: str, *, process_index: int, process_count: int
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'mask_folder'. data_config keys: root (required, the folder above the splits)."""
    tfds_reading.check_process(process_index, process_count)
    root = data_config.get("root")
    folder = resolve_split(root, split)
    image_paths, mask_paths = list_pairs(root, folder)
    names = class_names_of(root)
    num_examples = {s: _count_images(root, s) for s in _splits(root)}
    num_examples[split] = len(image_paths)
    # Process i of n keeps every n-th example.
    positions = range(process_index, len(image_paths), process_count)
    examples = tf.data.Dataset.from_tensor_slices(
        {
            "mask_path": tf.constant([mask_paths[i] for i in positions], tf.string),
            "image_id": tf.constant(list(positions), tf.int64),
        }
    )
    images = image_files.decoded_images("mask_folder", [image_paths[i] for i in positions])

    def read(example, image):
        mask = tf.numpy_function(_checked_mask, [example["mask_path"], np.int64(len(names))], tf.uint8, stateful=False)
        mask.set_shape([None, None])
        return {"image": image, "image_id": example["image_id"], "segmentation": mask}

    ds = tf.data.Dataset.zip(examples, images).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="mask_folder",
        num_classes=len(names) - 1,
        class_names=names[1:],
        num_examples=num_examples,
        image_shape=(None, None, 3),
        has=frozenset({"segmentation"}),
        segmentation_class_names=names,
    )
    return ds, info

"""Object-detection datasets from the tfds catalogue, by name: `coco/2017`, `voc/2007`, `voc/2012`.

They need their tfds data (prepared by tfds on first use when the machine is online, into
`data_config.data_dir`, default ~/tensorflow_datasets; or prepared elsewhere and copied there).
Splits: coco/2017 'train', 'validation', 'test' (test has no annotations); voc 'train', 'validation',
'test' (voc/2012's test has no annotations).

Each tfds example becomes a canonical example (dataset_info.py) with:
- `image` uint8 [H, W, 3];
- `image_id` int64: coco/2017 -> the COCO image id (`image/id`, what COCO results files use);
  voc -> the example's position in the split (tfds_reading.py);
- `boxes` float32 [N, 4] (x1, y1, x2, y2) in absolute pixels of the image. tfds stores normalised
  (ymin, xmin, ymax, xmax); they are converted here, once. VOC's annotations are 1-based inclusive pixel
  indices (tfds divides them by the size unchanged), so x1 and y1 move by -1 into continuous
  coordinates, as detectron2's VOC loader does (pixel i, 1-based, covers [i - 1, i));
- `classes` int64 [N] in 0..C-1 (tfds's label index; COCO's 80 categories in id order);
- `is_crowd` bool [N] (COCO's `iscrowd`; all False for VOC);
- `is_difficult` bool [N], VOC only (VOC's AP ignores difficult objects);
- `dropped_degenerate_boxes` int32: objects removed because their box is not finite or has no area
  (x2 <= x1 or y2 <= y1 after clipping to the image), e.g. inverted boxes.

Validation: `tfds.testing.mock_data` fills each object field with its own random length and random,
possibly inverted, boxes; the fields are cut to their shortest common length and invalid boxes are
dropped (and counted), so every example is consistent. Real tfds data always has equal lengths.
"""

from __future__ import annotations

import functools

import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

DETECTION_NAMES = ("coco/2017", "voc/2007", "voc/2012")

# COCO's original category ids of its 80 classes, in id order (= tfds's label index order). Used to
# write results files that the COCO tools read.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)


def category_ids(name: str) -> tuple[int, ...] | None:
    """The dataset's own id of each contiguous class 0..C-1 when it has ids (coco/2017), else None."""
    return COCO_CATEGORY_IDS if name == "coco/2017" else None


def valid_box_mask(boxes: tf.Tensor) -> tf.Tensor:
    """bool [N]: the box (x1, y1, x2, y2) is finite and has positive width and height."""
    finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
    return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def normalized_yxyx_to_absolute_xyxy(bbox: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """tfds BBox [N, 4] (ymin, xmin, ymax, xmax) in [0, 1] -> float32 [N, 4] (x1, y1, x2, y2) pixels."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.reshape(tf.cast(bbox, tf.float32), [-1, 4]), axis=-1)
    return tf.stack([xmin * w, ymin * h, xmax * w, ymax * h], axis=-1)


def clean_objects(boxes: tf.Tensor, fields: dict[str, tf.Tensor], height, width) -> tuple[tf.Tensor, dict, tf.Tensor]:
    """Makes object fields consistent and drops invalid boxes.

    boxes: float32 [Nb, 4] absolute (x1, y1, x2, y2); fields: name -> [Ni] per-object values (lengths
    may differ under mock data). All are cut to N = min(Nb, Ni...), boxes are clipped to the image
    [0, width] x [0, height], and objects whose box is invalid (`valid_box_mask`) are removed.
    Returns (boxes [K, 4], fields with [K] each, number removed as invalid int32).
    """
    count = tf.shape(boxes)[0]
    for values in fields.values():
        count = tf.minimum(count, tf.shape(values)[0])
    boxes = boxes[:count]
    w, h = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
    # Clip before the check, so that a box fully outside the image has no area and is dropped.
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    boxes = tf.stack([tf.clip_by_value(x1, 0.0, w), tf.clip_by_value(y1, 0.0, h),
                      tf.clip_by_value(x2, 0.0, w), tf.clip_by_value(y2, 0.0, h)], axis=-1)
    keep = valid_box_mask(boxes)
    cleaned = {key: tf.boolean_mask(values[:count], keep) for key, values in fields.items()}
    dropped = count - tf.reduce_sum(tf.cast(keep, tf.int32))
    return tf.boolean_mask(boxes, keep), cleaned, dropped


def _to_canonical(name: str, example: dict) -> dict:
    image = example["image"]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    objects = example["objects"]
    boxes = normalized_yxyx_to_absolute_xyxy(objects["bbox"], height, width)
    is_voc = name.startswith("voc/")
    if is_voc:
        boxes = boxes - tf.constant([1.0, 1.0, 0.0, 0.0])  # 1-based inclusive -> continuous (module doc)
    fields = {"classes": tf.cast(objects["label"], tf.int64)}
    if is_voc:
        fields["is_difficult"] = tf.cast(objects["is_difficult"], tf.bool)
    else:
        fields["is_crowd"] = tf.cast(objects["is_crowd"], tf.bool)
    boxes, fields, dropped = clean_objects(boxes, fields, height, width)
    if is_voc:
        fields["is_crowd"] = tf.zeros_like(fields["is_difficult"])
    image_id = example["image/id"] if "image/id" in example else example["image_id"]
    return {
        "image": image,
        "image_id": tf.cast(image_id, tf.int64),
        "boxes": boxes,
        **fields,
        "dropped_degenerate_boxes": dropped,
    }


def load_tfds_detection(name: str, data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for a tfds detection dataset `name` (one of DETECTION_NAMES). data_config keys: data_dir
    (None = tfds default), download (bool, default True: let tfds download and prepare missing data)."""
    if name not in DETECTION_NAMES:
        raise ValueError(f"unknown tfds detection dataset {name!r}; known: {DETECTION_NAMES}")
    builder = tfds.builder(name, data_dir=data_config.get("data_dir"))
    if data_config.get("download", True):
        tfds_reading.prepare(
            builder,
            what_to_do=(
                f"Without internet, prepare it on a machine with internet (`tfds build {name}`) and copy "
                f"{builder.name}/ into data_dir."
            ),
        )
    elif not builder.is_prepared():
        raise ValueError(f"tfds dataset {name!r} is not prepared in data_dir {builder.data_dir} and download=False")
    tfds_reading.check_split(builder, split, name)
    ds = tfds_reading.read_process_shard(builder, split, process_index=process_index, process_count=process_count)
    ds = ds.map(functools.partial(_to_canonical, name), num_parallel_calls=tf.data.AUTOTUNE)

    known_splits = tfds_reading.split_names(builder)
    # Under tfds.testing.mock_data no split metadata exists: count the requested split instead.
    num_examples = (
        {s: builder.info.splits[s].num_examples for s in known_splits}
        if known_splits
        else {split: tfds_reading.split_size(builder, split)}
    )
    class_names = tuple(builder.info.features["objects"]["label"].names)
    info = DatasetInfo(
        name=name,
        num_classes=len(class_names),
        class_names=class_names,
        num_examples=num_examples,
        image_shape=(None, None, 3),
        has=frozenset({"boxes"}),
    )
    return ds, info


"""A user's own detection / instance-segmentation data in COCO instances format.

```
root/
  train.json   train/<file_name of each image>
  val.json     val/...
```
`root/<split>.json` is a COCO instances file (`images` with id, file_name, height, width; `annotations`
with image_id, category_id, bbox (x, y, w, h), iscrowd, optional segmentation as polygons or RLE;
`categories` with id, name). Chosen with `--config.data.name=coco_json --config.data.root=DIR`.

Canonical examples (dataset_info.py):
- `image` uint8 [H, W, 3] (JPEG decoded with the accurate DCT, PNG; grayscale/RGBA -> RGB); its size
  must equal the json's height and width;
- `image_id` int64 = the json's image id (so results files need no mapping; ids must be in
  [0, 2**31), as the batch carries them as int32);
- `boxes` float32 [N, 4] (x1, y1, x2, y2) = (x, y, x + w, y + h), clipped to the image;
- `classes` int64 [N]: categories sorted by id get the contiguous classes 0..C-1, named by their
  `name` (`category_ids(root, split)` gives the json id of each class);
- `is_crowd` bool [N] from `iscrowd`;
- `masks` uint8 [N, H, W], only when every kept annotation of the file has a segmentation and
  `data_config.with_masks` (default True): polygons, uncompressed and compressed RLE decoded with
  pycocotools (`COCO.annToMask`), lazily per image;
- `dropped_degenerate_boxes` int32: annotations dropped because their box has no area after clipping.
Images without annotations are kept (N = 0). Examples are in the order of image id; process i of n
reads every n-th.

Checks, each reporting by path and image id: at load time, every image of this process's shard gets
image_files.py's cheap check (signature, end of file, and the width and height in its header, which
must equal the json's), so truncated files and wrong sizes are all listed before training; an image
that still fails to decode, or decodes to another size, fails the pipeline with an error naming it.
Boxes clipped to their image and boxes dropped for having no area are counted and logged (a warning
with a few examples) when the json is parsed, besides the per-example count above.

Splits: the requested split's json must exist, except that 'test' and 'val' (or 'validation') stand in
for each other when only one of them exists (the shared configs evaluate on 'test', COCO-style
folders have 'val'); the substitution is logged. Within one process, every split read from one root
must have the same categories (checked), so a class id means the same thing in train and eval.
Parsed json files are cached per (path, modification time, size): evaluation reloads are cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os

import numpy as np
import tensorflow as tf

from vision_jax.data import data_errors, image_files, tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

SPLIT_STAND_INS = {"test": ("val", "validation"), "val": ("test", "validation"), "validation": ("val", "test")}
_MAX_IMAGE_ID = 2**31 - 1
_LOGGED_EXAMPLES = 3  # clipped / dropped boxes named in the log
logger = logging.getLogger(__name__)
_CATEGORIES_BY_ROOT: dict[str, dict[str, tuple[tuple[int, ...], tuple[str, ...]]]] = {}  # root -> split -> categories


@dataclasses.dataclass(frozen=True)
class CocoSplit:
    """A parsed split. Per image (sorted by id): path, id, size and its kept annotations."""

    json_path: str
    coco: object  # pycocotools.coco.COCO
    category_ids: tuple[int, ...]  # json id of class 0..C-1
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    image_ids: np.ndarray  # int64 [I]
    kept_annotation_ids: tuple[tuple[int, ...], ...]  # per image, in the order of its boxes
    boxes: np.ndarray  # float32 [total, 4] xyxy, images' rows concatenated
    classes: np.ndarray  # int64 [total]
    is_crowd: np.ndarray  # bool [total]
    row_lengths: np.ndarray  # int64 [I]
    dropped: np.ndarray  # int32 [I]
    has_masks: bool


def resolve_split(root: str, split: str) -> str:
    """The split whose json is read for `split` (itself, or a stand-in: module docstring)."""
    if not root or not os.path.isdir(root):
        raise ValueError(f"coco_json: root {root!r} is not a folder; set --config.data.root=DIR with DIR/<split>.json and DIR/<split>/")
    if os.path.isfile(os.path.join(root, f"{split}.json")):
        return split
    available = sorted(f[:-5] for f in os.listdir(root) if f.endswith(".json"))
    stand_ins = [s for s in SPLIT_STAND_INS.get(split, ()) if s in available]
    if stand_ins:
        logging.info("coco_json: %s has no %s.json; using %s.json for split %r", root, split, stand_ins[0], split)
        return stand_ins[0]
    raise ValueError(f"coco_json: {os.path.join(root, split + '.json')} not found; splits available in {root}: {available}")


def json_path(root: str, split: str) -> str:
    """Path of the json read for `split` (after stand-ins)."""
    return os.path.join(root, f"{resolve_split(root, split)}.json")


@functools.lru_cache(maxsize=8)
def _load_coco(path: str, mtime_ns: int, size: int):
    del mtime_ns, size  # cache keys only
    from pycocotools.coco import COCO  # local: only this loader needs pycocotools

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        try:
            return COCO(path)
        except Exception as error:  # json errors, missing keys
            raise ValueError(f"coco_json: {path} is not a readable COCO instances file: {type(error).__name__}: {error}") from error


def load_coco(path: str):
    """pycocotools COCO for a json file, parsed once per (path, mtime, size) in this process."""
    stat = os.stat(path)
    return _load_coco(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def _box_xyxy(annotation: dict, width: float, height: float) -> tuple[np.ndarray | None, bool]:
    """COCO (x, y, w, h) -> ((x1, y1, x2, y2) clipped to the image, or None if it has no area after
    clipping; whether clipping moved a corner)."""
    bbox = annotation.get("bbox")
    if bbox is None or len(bbox) != 4:
        raise ValueError(f"coco_json: annotation {annotation.get('id')} has no bbox [x, y, w, h] (got {bbox!r})")
    x, y, w, h = (float(v) for v in bbox)
    corners = np.array([x, y, x + w, y + h])
    box = np.clip(corners, 0, [width, height, width, height])
    if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        return None, False
    return box, bool(np.any(box != corners))


def _describe(annotation: dict, file_path: str, width: float, height: float) -> str:
    return (f"annotation {annotation['id']} of image id {annotation['image_id']} ({file_path}, "
            f"{width:g}x{height:g}): bbox {annotation['bbox']}")


def _log_box_changes(path: str, total: int, clipped: tuple[int, list[str]], dropped: tuple[int, list[str]]) -> None:
    """Warns how many boxes the loader clipped and dropped, with the first few of each."""
    for (count, examples), what in (
        (clipped, "extend past their image and were clipped to it"),
        (dropped, "have no area inside their image and were dropped"),
    ):
        if count:
            logger.warning("coco_json: %s: %d of %d boxes %s, e.g. %s", path, count, total, what, "; ".join(examples))


@functools.lru_cache(maxsize=8)
def _read_split_cached(path: str, mtime_ns: int, size: int, image_dir: str) -> CocoSplit:
    coco = _load_coco(path, mtime_ns, size)
    categories = sorted(coco.dataset.get("categories", []), key=lambda c: c["id"])
    if not categories:
        raise ValueError(f"coco_json: {path} has no categories")
    category_ids = tuple(int(c["id"]) for c in categories)
    if len(set(category_ids)) != len(category_ids):
        raise ValueError(f"coco_json: {path} has repeated category ids: {category_ids}")
    class_of = {cid: index for index, cid in enumerate(category_ids)}
    images = sorted(coco.dataset.get("images", []), key=lambda image: image["id"])
    paths, ids, kept_ids, boxes, classes, crowd, lengths, dropped = [], [], [], [], [], [], [], []
    clipped_examples, dropped_examples, num_annotations, num_clipped, num_dropped = [], [], 0, 0, 0
    has_masks = True
    for image in images:
        image_id = int(image["id"])
        if not 0 <= image_id <= _MAX_IMAGE_ID:
            raise ValueError(f"coco_json: {path}: image id {image_id} is outside [0, 2**31) (batches carry ids as int32)")
        file_path = os.path.join(image_dir, image["file_name"])
        if not os.path.isfile(file_path):
            raise ValueError(f"coco_json: image {file_path} (id {image_id}, listed in {path}) not found")
        width, height = float(image["width"]), float(image["height"])
        kept, n_dropped = [], 0
        for annotation in sorted(coco.imgToAnns.get(image["id"], []), key=lambda a: a["id"]):
            if annotation["category_id"] not in class_of:
                raise ValueError(f"coco_json: {path}: annotation {annotation['id']} has category_id {annotation['category_id']} not in categories {category_ids}")
            box, was_clipped = _box_xyxy(annotation, width, height)
            num_annotations += 1
            if box is None:
                n_dropped += 1
                num_dropped += 1
                if len(dropped_examples) < _LOGGED_EXAMPLES:
                    dropped_examples.append(_describe(annotation, file_path, width, height))
                continue
            if was_clipped:
                num_clipped += 1
                if len(clipped_examples) < _LOGGED_EXAMPLES:
                    clipped_examples.append(f"{_describe(annotation, file_path, width, height)} -> x1 y1 x2 y2 "
                                            f"{[round(float(v), 2) for v in box]}")
            kept.append(int(annotation["id"]))
            boxes.append(box)
            classes.append(class_of[annotation["category_id"]])
            crowd.append(bool(annotation.get("iscrowd", 0)))
            has_masks &= bool(annotation.get("segmentation"))
        paths.append(file_path)
        ids.append(image_id)
        kept_ids.append(tuple(kept))
        lengths.append(len(kept))
        dropped.append(n_dropped)
    if not images:
        raise ValueError(f"coco_json: {path} lists no images")
    _log_box_changes(path, num_annotations, (num_clipped, clipped_examples), (num_dropped, dropped_examples))
    return CocoSplit(
        json_path=path,
        coco=coco,
        category_ids=category_ids,
        class_names=tuple(str(c["name"]) for c in categories),
        paths=tuple(paths),
        image_ids=np.asarray(ids, np.int64),
        kept_annotation_ids=tuple(kept_ids),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        classes=np.asarray(classes, np.int64),
        is_crowd=np.asarray(crowd, bool),
        row_lengths=np.asarray(lengths, np.int64),
        dropped=np.asarray(dropped, np.int32),
        has_masks=has_masks and len(boxes) > 0,
    )


def read_split(root: str, split: str) -> CocoSplit:
    """Parses and validates `root/<split>.json` (cached). Raises ValueError naming the problem."""
    resolved = resolve_split(root, split)
    path = os.path.abspath(os.path.join(root, f"{resolved}.json"))
    stat = os.stat(path)
    result = _read_split_cached(path, stat.st_mtime_ns, stat.st_size, os.path.join(os.path.abspath(root), resolved))
    categories = (result.category_ids, result.class_names)
    splits_seen = _CATEGORIES_BY_ROOT.setdefault(os.path.abspath(root), {})
    splits_seen[resolved] = categories  # re-reading a split (after an edit) replaces what it had
    for other, seen in splits_seen.items():
        if seen != categories:
            raise ValueError(
                f"coco_json: {path} has categories {list(zip(*categories))}, but split {other!r} of {root} has "
                f"{list(zip(*seen))}: every split must list the same categories"
            )
    return result


@functools.lru_cache(maxsize=4)
def _ground_truth_cached(path: str, mtime_ns: int, size: int, image_dir: str):
    from pycocotools.coco import COCO

    data = _read_split_cached(path, mtime_ns, size, image_dir)
    annotations, row = [], 0
    for kept in data.kept_annotation_ids:
        for annotation_id in kept:
            x1, y1, x2, y2 = (float(v) for v in data.boxes[row])
            annotations.append({**data.coco.anns[annotation_id], "bbox": [x1, y1, x2 - x1, y2 - y1]})
            row += 1
    coco = COCO()
    coco.dataset = {**data.coco.dataset, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluation_ground_truth(root: str, split: str):
    """pycocotools COCO of the split as the loader reads it, for evaluation: the json's annotations with
    boxes clipped to the image and those without area left out (cached like the json)."""
    read_split(root, split)  # validates, and checks the categories against other splits
    path = os.path.abspath(json_path(root, split))
    stat = os.stat(path)
    return _ground_truth_cached(path, stat.st_mtime_ns, stat.st_size, os.path.join(os.path.abspath(root), resolve_split(root, split)))


def category_ids(root: str, split: str) -> tuple[int, ...]:
    """The json category id of each contiguous class 0..C-1."""
    return read_split(root, split).category_ids


def check_images(data: CocoSplit, positions: range) -> None:
    """The load-time check of the images at `positions` (module docstring): ValueError listing every
    file that is not a readable JPEG/PNG or whose header size differs from the json's."""
    problems = []
    for position in positions:
        path, image_id = data.paths[position], int(data.image_ids[position])
        verdict = image_files.inspect_file(path, read_size=True)
        image = data.coco.imgs[image_id]
        if verdict.problem:
            problems.append(f"{path} (image id {image_id}) {verdict.problem}")
        elif verdict.size != (int(image["height"]), int(image["width"])):
            problems.append(
                f"{path} (image id {image_id}) is {verdict.size[1]}x{verdict.size[0]} (width x height), but "
                f"{os.path.basename(data.json_path)} says width {image['width']}, height {image['height']}"
            )
    image_files.raise_for_problems(f"coco_json: {data.json_path}", problems, len(positions))


def _checked_size(image: tf.Tensor, example: dict) -> tf.Tensor:
    """The image, after an in-graph check that it has the json's size (a file changed after load)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    check = data_errors.graph_assert(
        tf.reduce_all(tf.equal(tf.stack([height, width]), tf.stack([example["height"], example["width"]]))),
        "coco_json: ", example["path"], " (image id ", tf.strings.as_string(example["image_id"]), ") decodes to ",
        tf.strings.as_string(width), "x", tf.strings.as_string(height), " (width x height), but its json says width ",
        tf.strings.as_string(example["width"]), ", height ", tf.strings.as_string(example["height"]),
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def load_coco_json(data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'coco_json'. data_config keys: root (required), with_masks (default True)."""
    tfds_reading.check_process(process_index, process_count)
    root = data_config.get("root")
    data = read_split(root, split)
    with_masks = data.has_masks and bool(data_config.get("with_masks", True))
    positions = range(process_index, len(data.paths), process_count)  # process i of n: every n-th image
    check_images(data, positions)
    sizes = [(int(data.coco.imgs[i]["height"]), int(data.coco.imgs[i]["width"])) for i in data.image_ids.tolist()]
    ragged = lambda values: tf.RaggedTensor.from_row_lengths(values, data.row_lengths)
    ds = tf.data.Dataset.from_tensor_slices({
        "path": tf.constant(data.paths),
        "image_id": tf.constant(data.image_ids, tf.int64),
        "position": tf.range(len(data.paths), dtype=tf.int64),
        "height": tf.constant([h for h, _ in sizes], tf.int32),
        "width": tf.constant([w for _, w in sizes], tf.int32),
        "boxes": ragged(tf.constant(data.boxes, tf.float32)),
        "classes": ragged(tf.constant(data.classes, tf.int64)),
        "is_crowd": ragged(tf.constant(data.is_crowd, tf.bool)),
        "dropped_degenerate_boxes": tf.constant(data.dropped, tf.int32),
    })
    ds = ds.shard(process_count, process_index)
    images = image_files.decoded_images(
        f"coco_json: {data.json_path}", [data.paths[i] for i in positions],
        [f"image id {int(data.image_ids[i])}" for i in positions],
    )

    def decode_masks(position: np.ndarray) -> np.ndarray:
        position = int(position)
        image = data.coco.imgs[int(data.image_ids[position])]
        masks = [data.coco.annToMask(data.coco.anns[a]) for a in data.kept_annotation_ids[position]]
        if not masks:
            return np.zeros((0, int(image["height"]), int(image["width"])), np.uint8)
        return np.stack(masks).astype(np.uint8)

    def read(example, image):
        out = {
            "image": _checked_size(image, example),
            **{k: example[k] for k in ("image_id", "boxes", "classes", "is_crowd", "dropped_degenerate_boxes")},
        }
        if with_masks:
            masks = tf.numpy_function(decode_masks, [example["position"]], tf.uint8, stateful=False)
            masks.set_shape([None, None, None])
            out["masks"] = masks
        return out

    ds = tf.data.Dataset.zip(ds, images).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name="coco_json",
        num_classes=len(data.class_names),
        class_names=data.class_names,
        num_examples={split: len(data.paths)},
        image_shape=(None, None, 3),
        has=frozenset({"boxes", "masks"} if with_masks else {"boxes"}),
    )
    return ds, info

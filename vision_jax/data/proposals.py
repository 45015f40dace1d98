"""Region proposals from outside the network, as data: computed once per split (selective search) and
cached on disk, or read from the user's file; looked up per image by the detection input pipeline.

API
---
`proposal_table(data_config, split) -> ProposalTable | None`: the proposals of every image of `split`
  as `data.proposals` says ('' -> None; 'selective_search' -> the cache, computed when absent; else a
  file). Boxes are in original image pixels, (x1, y1, x2, y2).
`ProposalTable.lookup(image_id) -> (boxes float32 [n, 4], scores float32 [n])`, n >= 1, at most
  `data.max_proposals`; `ProposalTable.tf_lookup(image_id)` is the same inside a tf.data graph.
`compute_selective_search(ds, ...)`: the proposals of a dataset of canonical examples, in parallel
  processes; `selective_search_table(data_config, ds, source)` the same with the config's settings
  (scripts/predict.py --images runs it on the user's folder). `read_proposal_file(path)`,
  `write_proposal_npz(path, table)`, `proposal_recall(...)`.

Config keys (`add_proposal_defaults`): `data.proposals` ('' = none, the default; 'selective_search';
or a path to a .pkl / .npz file, where '{split}' in the path is replaced by the split's name),
`data.max_proposals` (2000: R-CNN's and Fast R-CNN's number; the pipeline pads to it),
`data.selective_search_strategy` ('fast': selective_search.py), `data.proposals_cache_dir` ('' =
$VISION_JAX_CACHE/proposals, else ~/.cache/vision_jax/proposals), `data.proposal_workers` (0 = one
process per CPU core).

Cache. One file per (dataset, split, settings): `<cache_dir>/<dataset name>-<split>-<hash>.npz`,
where the hash covers the keys that identify the images (`data.name`, `root` made absolute,
`data_dir`, `shapes_variant`, `shapes_num_train`, `shapes_num_test`), the split and the selective-
search settings. It is written atomically (a temporary file in the same folder, then renamed), so a
killed run never leaves half a file and parallel runs at worst compute it twice. On reuse, its image
ids must be exactly the split's; otherwise (the user's folder changed) it is recomputed and replaced,
with a warning. Several hosts each compute their own copy unless they share the cache folder.

File format (the cache's and the user's .npz): `ids` int64 [N], `counts` int64 [N] (proposals per
image), `boxes` float32 [sum(counts), 4] (x1, y1, x2, y2) original pixels, image after image, and
optional `scores` float32 [sum(counts)]. A .pkl / .pickle file is detectron2's precomputed-proposal
format: a dict with 'ids' (image ids), 'boxes' (one [n_i, 4] array per image), optional
'objectness_logits' (one [n_i] array per image, used as scores) and optional 'bbox_mode' (0 =
XYXY_ABS, the default; 1 = XYWH_ABS). A pickle can run code when loaded: read only files you trust.

Bad input (every case logged with counts; errors name the file):
* images of the split without proposals in the file -> ValueError listing a few ids;
* ids in the file that are not in the split -> ignored, counted and logged (one file often covers
  several splits); ValueError if none of the file's ids is in the split (a different id scheme);
* degenerate boxes (non-finite, x2 <= x1 or y2 <= y1) -> dropped, counted and logged;
* an image left without any proposal (selective search found nothing above the minimum side, or all
  of its file boxes were degenerate) -> the whole image is its one proposal (score 0), counted in
  `ProposalTable.whole_image_fallbacks` and logged;
* with scores, an image's proposals are sorted by decreasing score and cut to `max_proposals`
  (detectron2's PRECOMPUTED_PROPOSAL_TOPK); without, the first `max_proposals` are kept.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator

import ml_collections
import numpy as np

from vision_jax.data import selective_search as ss

logger = logging.getLogger(__name__)

SELECTIVE_SEARCH = "selective_search"
IDENTITY_KEYS = ("name", "root", "data_dir", "shapes_variant", "shapes_num_train", "shapes_num_test")
CACHE_FORMAT_VERSION = 1
_SHOWN = 5  # ids named in an error or a warning


def add_proposal_defaults(c: ml_collections.ConfigDict) -> None:
    """Adds the `data.*` proposal keys of the module docstring with their defaults."""
    c.data.proposals = ""  # '' | 'selective_search' | a .pkl / .npz path ('{split}' is replaced)
    c.data.max_proposals = 2000  # proposals per image (padding rows invalid)
    c.data.selective_search_strategy = "fast"  # selective_search.STRATEGIES
    c.data.proposals_cache_dir = ""  # '' = $VISION_JAX_CACHE/proposals or ~/.cache/vision_jax/proposals
    c.data.proposal_workers = 0  # processes computing selective search; 0 = os.cpu_count()


@dataclasses.dataclass
class ProposalTable:
    """Proposals per image id (original pixels) and how the bad cases were handled (counts)."""

    boxes: dict[int, np.ndarray]  # image id -> float32 [n, 4], n >= 1
    scores: dict[int, np.ndarray]  # image id -> float32 [n]
    source: str  # the file or the cache it came from (for messages)
    whole_image_fallbacks: int = 0
    dropped_degenerate: int = 0
    ignored_unknown_ids: int = 0

    def lookup(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = int(image_id)
        if image_id not in self.boxes:
            raise ValueError(f"no proposals for image id {image_id} in {self.source}")
        return self.boxes[image_id], self.scores[image_id]

    def tf_lookup(self, image_id):
        """Inside tf.data: int scalar tensor -> (float32 [n, 4], float32 [n]) tensors."""
        import tensorflow as tf

        boxes, scores = tf.numpy_function(self.lookup, [image_id], [tf.float32, tf.float32], stateful=False)
        boxes.set_shape([None, 4])
        scores.set_shape([None])
        return boxes, scores

    def counts(self) -> np.ndarray:
        return np.asarray([len(b) for b in self.boxes.values()], np.int64)


def _cache_dir(data_config) -> str:
    configured = data_config.get("proposals_cache_dir") or ""
    if configured:
        return os.path.expanduser(configured)
    root = os.environ.get("VISION_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vision_jax")
    return os.path.join(root, "proposals")


def cache_path(data_config: ml_collections.ConfigDict, split: str) -> str:
    """The cache file of (dataset, split, selective-search settings) (module docstring)."""
    identity = {key: data_config.get(key) for key in IDENTITY_KEYS}
    if identity["root"]:
        identity["root"] = os.path.abspath(os.path.expanduser(identity["root"]))
    identity.update(split=split, strategy=data_config.selective_search_strategy,
                    max_proposals=int(data_config.max_proposals), version=CACHE_FORMAT_VERSION)
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    slug = "".join(ch if ch.isalnum() else "_" for ch in str(data_config.name))
    return os.path.join(_cache_dir(data_config), f"{slug}-{split}-{digest}.npz")


# --- reading and writing ----------------------------------------------------------------------------
def write_proposal_npz(path: str, table: ProposalTable) -> None:
    """Writes `table` in the .npz format of the module docstring, atomically."""
    ids = np.asarray(sorted(table.boxes), np.int64)
    counts = np.asarray([len(table.boxes[i]) for i in ids], np.int64)
    boxes = np.concatenate([table.boxes[i] for i in ids]) if len(ids) else np.zeros((0, 4), np.float32)
    scores = np.concatenate([table.scores[i] for i in ids]) if len(ids) else np.zeros((0,), np.float32)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".proposals-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, ids=ids, counts=counts, boxes=boxes.astype(np.float32), scores=scores.astype(np.float32))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _raw_from_npz(path: str) -> tuple[list[int], list[np.ndarray], list[np.ndarray] | None]:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("ids", "counts", "boxes") if key not in data]
        if missing:
            raise ValueError(f"proposal file {path} lacks {missing}; it needs ids [N], counts [N], "
                             f"boxes [sum(counts), 4] and optional scores [sum(counts)]")
        ids, counts, boxes = data["ids"], data["counts"].astype(np.int64), data["boxes"]
        scores = data["scores"] if "scores" in data else None
    if ids.shape != counts.shape or boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != counts.sum() \
            or (scores is not None and scores.shape != (boxes.shape[0],)) or (counts < 0).any():
        raise ValueError(f"proposal file {path}: inconsistent shapes ids {ids.shape}, counts {counts.shape} (sum "
                         f"{counts.sum()}), boxes {boxes.shape}, scores {None if scores is None else scores.shape}")
    splits = np.cumsum(counts)[:-1]
    return ([int(i) for i in ids], np.split(boxes, splits),
            None if scores is None else np.split(scores, splits))


def _raw_from_pickle(path: str) -> tuple[list[int], list[np.ndarray], list[np.ndarray] | None]:
    with open(path, "rb") as f:
        data = pickle.load(f)  # noqa: S301 (documented: the user's own, trusted file)
    if not isinstance(data, dict) or "ids" not in data or "boxes" not in data:
        raise ValueError(f"proposal file {path} is not detectron2's format: a dict with 'ids', 'boxes' and optional "
                         f"'objectness_logits', 'bbox_mode'")
    ids, boxes, scores = list(data["ids"]), list(data["boxes"]), data.get("objectness_logits")
    if len(ids) != len(boxes) or (scores is not None and len(scores) != len(ids)):
        raise ValueError(f"proposal file {path}: {len(ids)} ids but {len(boxes)} box arrays"
                         + ("" if scores is None else f" and {len(scores)} objectness_logits arrays"))
    boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
    mode = int(data.get("bbox_mode", 0))
    if mode not in (0, 1):
        raise ValueError(f"proposal file {path}: bbox_mode={mode} is not 0 (XYXY_ABS) or 1 (XYWH_ABS)")
    if mode == 1:
        boxes = [np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1) for b in boxes]
    if scores is not None:
        scores = [np.asarray(s, np.float32).reshape(-1) for s in scores]
        bad = [i for i, (b, s) in zip(ids, zip(boxes, scores)) if len(b) != len(s)]
        if bad:
            raise ValueError(f"proposal file {path}: boxes and objectness_logits differ in length for image ids "
                             f"{bad[:_SHOWN]}")
    return [int(i) for i in ids], boxes, scores


def _clean(image_id, boxes, scores, image_size, max_proposals, stats) -> tuple[np.ndarray, np.ndarray]:
    """One image's proposals: degenerate boxes dropped, top max_proposals by score (when scored), the
    whole image when nothing is left (needs image_size (h, w); without it, a ValueError)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.zeros(len(boxes), np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
    good = np.isfinite(boxes).all(1) & np.isfinite(scores) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    stats["dropped_degenerate"] += int((~good).sum())
    boxes, scores = boxes[good], scores[good]
    order = np.argsort(-scores, kind="stable")[:max_proposals]
    boxes, scores = boxes[order], scores[order]
    if len(boxes) == 0:
        if image_size is None:
            raise ValueError(f"image id {image_id} has no usable proposal and its size is unknown")
        stats["whole_image_fallbacks"] += 1
        height, width = image_size
        boxes, scores = np.asarray([[0.0, 0.0, width, height]], np.float32), np.zeros(1, np.float32)
    return boxes, scores


def read_proposal_file(path: str, split_ids: Iterable[int], image_sizes: dict[int, tuple[int, int]] | None = None,
                       *, max_proposals: int) -> ProposalTable:
    """The user's proposals (.npz or detectron2 .pkl, module docstring) for the images `split_ids`.

    image_sizes: id -> (height, width), used only for an image left without a proposal.
    Raises ValueError for a missing or malformed file, split images without proposals, or a file none
    of whose ids is in the split.
    """
    if not os.path.isfile(path):
        raise ValueError(f"proposal file {path} (config key data.proposals) does not exist")
    readers = {".npz": _raw_from_npz, ".pkl": _raw_from_pickle, ".pickle": _raw_from_pickle}
    reader = readers.get(os.path.splitext(path)[1])
    if reader is None:
        raise ValueError(f"proposal file {path}: unknown format; use .npz or detectron2's .pkl "
                         f"(config key data.proposals)")
    ids, boxes, scores = reader(path)
    wanted = {int(i) for i in split_ids}
    present = set(ids)
    unknown = [i for i in ids if i not in wanted]
    if unknown and len(unknown) == len(ids):
        raise ValueError(f"proposal file {path}: none of its {len(ids)} image ids (e.g. {unknown[:_SHOWN]}) "
                         f"is in the split")
    missing = sorted(wanted - present)
    if missing:
        raise ValueError(f"proposal file {path} has no proposals for {len(missing)} image(s) of the split, e.g. ids "
                         f"{missing[:_SHOWN]}")
    stats = {"dropped_degenerate": 0, "whole_image_fallbacks": 0}
    table_boxes, table_scores = {}, {}
    for index, image_id in enumerate(ids):
        if image_id not in wanted:
            continue
        size = None if image_sizes is None else image_sizes.get(image_id)
        table_boxes[image_id], table_scores[image_id] = _clean(
            image_id, boxes[index], None if scores is None else scores[index], size, max_proposals, stats)
    table = ProposalTable(table_boxes, table_scores, path, ignored_unknown_ids=len(unknown), **stats)
    _log_handling(table, unknown)
    return table


def _log_handling(table: ProposalTable, unknown: list[int] = ()) -> None:
    if table.ignored_unknown_ids:
        logger.warning("%s: ignored proposals of %d image id(s) not in the split, e.g. %s", table.source,
                       table.ignored_unknown_ids, list(unknown)[:_SHOWN])
    if table.dropped_degenerate:
        logger.warning("%s: dropped %d degenerate proposal box(es) (non-finite, or x2 <= x1 or y2 <= y1)",
                       table.source, table.dropped_degenerate)
    if table.whole_image_fallbacks:
        logger.warning("%s: %d image(s) had no proposal; each got the whole image as its one proposal",
                       table.source, table.whole_image_fallbacks)


# --- selective search, in parallel processes ---------------------------------------------------------
def _search_one(args) -> tuple[int, np.ndarray]:
    image_id, image, strategy, max_proposals = args
    return image_id, ss.selective_search(image, strategy=strategy, max_proposals=max_proposals)


def _images(ds) -> Iterator[tuple[int, np.ndarray]]:
    """(image id, uint8 [H, W, 3]) of a tf.data dataset of canonical examples."""
    import tensorflow_datasets as tfds

    only = ds.map(lambda example: (example["image_id"], example["image"]))
    for image_id, image in tfds.as_numpy(only):
        yield int(image_id), image


def compute_selective_search(ds, *, strategy: str = "fast", max_proposals: int = ss.DEFAULT_MAX_PROPOSALS,
                             num_workers: int = 0, source: str = "selective search") -> ProposalTable:
    """Selective search on every image of `ds` (canonical examples), in `num_workers` processes (0 =
    os.cpu_count(); 1 = in this process). Workers are spawned, not forked (this process may hold
    TensorFlow's and JAX's threads), and get images in bounded chunks so memory stays small."""
    ss.require_ximgproc()  # fail here, not in every worker
    workers = num_workers or os.cpu_count() or 1
    stats = {"dropped_degenerate": 0, "whole_image_fallbacks": 0}
    boxes, scores = {}, {}
    chunk = 64 * workers

    def finish(image_id, found, size):
        boxes[image_id], scores[image_id] = _clean(image_id, found, None, size, max_proposals, stats)

    images = _images(ds)
    if workers == 1:
        for image_id, image in images:
            finish(image_id, _search_one((image_id, image, strategy, max_proposals))[1], image.shape[:2])
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            while True:
                batch = [next(images, None) for _ in range(chunk)]
                batch = [item for item in batch if item is not None]
                if not batch:
                    break
                sizes = {image_id: image.shape[:2] for image_id, image in batch}
                jobs = [(image_id, image, strategy, max_proposals) for image_id, image in batch]
                for image_id, found in pool.map(_search_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))):
                    finish(image_id, found, sizes[image_id])
    table = ProposalTable(boxes, scores, source, **stats)
    _log_handling(table)
    return table


# --- what the pipeline calls ---------------------------------------------------------------------------
def _split_ids_and_sizes(data_config, split) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """The split's image ids and (height, width) of each (one decoding pass)."""
    import tensorflow_datasets as tfds

    from vision_jax.data import datasets

    ds, _ = datasets.load(data_config, split)
    sizes = {}
    for image_id, size in tfds.as_numpy(ds.map(lambda example: (example["image_id"], _image_size(example["image"])))):
        sizes[int(image_id)] = (int(size[0]), int(size[1]))
    return list(sizes), sizes


def _image_size(image):
    """int32 [2] (height, width) of an image tensor."""
    import tensorflow as tf

    return tf.shape(image)[:2]


_TABLES: dict[tuple, ProposalTable] = {}  # (dataset, split, settings, file, file version) -> table


def _file_version(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def proposal_table(data_config: ml_collections.ConfigDict, split: str) -> ProposalTable | None:
    """The proposals of every image of `split` as `data.proposals` says (module docstring). Within one
    process a table is read once per (dataset, split, settings, file version): every evaluation of a
    run builds its preprocess again, and this keeps it from re-reading the split each time."""
    source = data_config.get("proposals") or ""
    if not source:
        return None
    max_proposals = int(data_config.max_proposals)
    if max_proposals < 1:
        raise ValueError(f"config.data.max_proposals={max_proposals} must be >= 1")
    path = cache_path(data_config, split) if source == SELECTIVE_SEARCH else source.replace("{split}", split)
    key = (cache_path(data_config, split), path, _file_version(path))
    if key[2] is not None and key in _TABLES:
        return _TABLES[key]
    table = _read_or_compute(data_config, split, source, path, max_proposals)
    _TABLES[(key[0], path, _file_version(path))] = table
    return table


def _read_or_compute(data_config, split: str, source: str, path: str, max_proposals: int) -> ProposalTable:
    if source != SELECTIVE_SEARCH:
        ids, sizes = _split_ids_and_sizes(data_config, split)
        return read_proposal_file(path, ids, sizes, max_proposals=max_proposals)
    strategy = _strategy(data_config)
    from vision_jax.data import datasets

    ds, _ = datasets.load(data_config, split)
    if os.path.isfile(path):
        ids = [int(i) for i in _iterate_ids(ds)]
        with np.load(path, allow_pickle=False) as cached:
            cached_ids = cached["ids"]
        if sorted(ids) == sorted(int(i) for i in cached_ids):
            table = read_proposal_file(path, ids, None, max_proposals=max_proposals)
            logger.info("proposals of %s/%s from the cache %s", data_config.name, split, path)
            return table
        logger.warning("proposal cache %s holds other image ids than %s/%s (the data changed): recomputing",
                       path, data_config.name, split)
    logger.info("selective search (%s) on %s/%s: computing once, cached at %s", strategy, data_config.name, split, path)
    table = selective_search_table(data_config, ds, source=path)
    write_proposal_npz(path, table)
    counts = table.counts()
    logger.info("selective search on %s/%s: %d images, %.1f proposals per image (min %d, max %d), %d whole-image "
                "fallbacks", data_config.name, split, len(counts), counts.mean() if len(counts) else 0.0,
                counts.min(initial=0), counts.max(initial=0), table.whole_image_fallbacks)
    return table


def _strategy(data_config) -> str:
    strategy = data_config.selective_search_strategy
    if strategy not in ss.STRATEGIES:
        raise ValueError(f"config.data.selective_search_strategy={strategy!r} is not one of {ss.STRATEGIES}")
    return strategy


def selective_search_table(data_config: ml_collections.ConfigDict, ds, source: str) -> ProposalTable:
    """Selective search on every image of `ds` (canonical examples, keyed by their `image_id`) with the
    config's settings (`data.selective_search_strategy`, `data.max_proposals`, `data.proposal_workers`),
    not cached: the split tables above, and the folder of scripts/predict.py --images."""
    max_proposals = int(data_config.max_proposals)
    if max_proposals < 1:
        raise ValueError(f"config.data.max_proposals={max_proposals} must be >= 1")
    return compute_selective_search(ds, strategy=_strategy(data_config), max_proposals=max_proposals,
                                    num_workers=int(data_config.get("proposal_workers", 0)), source=source)


def _iterate_ids(ds) -> Iterator[int]:
    import tensorflow_datasets as tfds

    for image_id in tfds.as_numpy(ds.map(lambda example: example["image_id"])):
        yield int(image_id)


# --- measuring ----------------------------------------------------------------------------------------
def proposal_recall(table: ProposalTable, ground_truth: dict[int, np.ndarray],
                    thresholds: tuple[float, ...] = (0.5, 0.7)) -> dict[str, float]:
    """Fraction of ground-truth boxes (id -> float [G, 4] original pixels) covered by some proposal at
    IoU >= each threshold, and proposals per image: {'recall@0.5': ..., 'proposals_per_image': ...}."""
    best = []
    for image_id, truth in ground_truth.items():
        truth = np.asarray(truth, np.float64).reshape(-1, 4)
        if not len(truth):
            continue
        boxes = table.lookup(image_id)[0].astype(np.float64)
        best.append(_iou(truth, boxes).max(axis=1))
    best = np.concatenate(best) if best else np.zeros(0)
    result = {f"recall@{t:g}": float((best >= t).mean()) if len(best) else float("nan") for t in thresholds}
    result["proposals_per_image"] = float(table.counts().mean())
    result["num_ground_truth"] = float(len(best))
    return result


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of boxes a [A, 4] and b [B, 4], float64."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)

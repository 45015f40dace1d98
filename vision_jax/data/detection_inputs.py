"""The detection input pipeline every detector task uses: canonical example -> fixed-shape tensors.

`make_detection_preprocess(config, info, train)` returns `fn(example, seed) -> dict` for
`pipeline.train_batches` / `eval_batches`. Per example, in this order:

0. training only, with `data.ssd_augment`: SSD's photometric distortion, expand and min-IoU crop
   (`vision_jax.data.ssd_augment`; boxes whose centre leaves the crop are dropped, not counted).
1. resize: `data.fixed_size=False` (two-stage detectors): keep the aspect ratio, the short side becomes
   `data.min_size` (in training, with `data.scale_jitter`, a random short side instead) and the long side
   at most `data.max_size` (detectron2's ResizeShortestEdge; sides rounded to the nearest pixel).
   `data.fixed_size=True` (SSD/YOLO): resize to `image_size x image_size`, aspect ratio not kept.
   Bilinear, half-pixel centres, no antialiasing. Boxes are multiplied by the exact per-axis scale.
2. training only, with `data.random_flip`: horizontal flip of image, boxes and masks (p = 0.5).
3. boxes clipped to the resized image; boxes with zero width or height are dropped and counted.
4. image normalised (transforms.normalize_image, ImageNet mean/std) and zero-padded at the bottom and
   right to `image_size x image_size` (0 = the mean colour after normalisation).
5. ground truth padded (or cut) to `data.max_instances`.

Output (shapes static; M = data.max_instances, S = data.image_size):
- `image` float32 [S, S, 3];
- `boxes` float32 [M, 4] (x1, y1, x2, y2) in network-input pixels; `classes` int32 [M] in 0..C-1;
  `valid` bool [M]; `is_crowd` bool [M] (crowd boxes stay valid: matchers ignore them, evaluators
  treat them as COCO does). Padding rows: valid=False, class -1 (never a real class), box 0, not crowd;
- `is_difficult` bool [M], when the dataset has it (VOC);
- with `data.with_masks`, training: `box_masks` uint8 [M, K, K] (K = data.mask_crop_size), each instance's
  mask cropped to its (clipped, network-input) box from the original-resolution mask, as coverage
  0..255 (vision_jax/data/instance_masks.py), flipped with the image; padding rows 0;
- with `data.with_masks`, evaluation (when `eval_masks`: an evaluator that reads ground truth from the
  batches): `masks` uint8 [M, Hm, Wm] 0/1, `data.mask_size=0` -> Hm = Wm = S, aligned
  with the image; k > 0 -> Hm = Wm = k, the canvas downsampled by S / k (mask pixel (r, c) covers network
  pixels [c S/k, (c+1) S/k) x [r S/k, (r+1) S/k)); nearest-neighbour resampling (transforms.resize_masks)
  from the original masks to the resized image's extent at that resolution, then flipped and padded;
- `image_info` float32 [4] = (original height, original width, scale_y, scale_x): a network-input point
  (x, y) is the original point (x / scale_x, y / scale_y) (the evaluators map predictions back with it);
- `image_id` int32: the canonical image id (COCO/coco_json: the dataset's own id);
- `dropped_degenerate_boxes` int32: boxes without area dropped by the loader plus those dropped here;
  `dropped_excess_instances` int32: instances beyond max_instances. Tasks report their batch sums as
  metrics, so that the count reaches the logs.

Config keys (added with defaults by `add_detection_data_defaults(c)`, which detector tasks call from
their `add_config_defaults`): `data.image_size` (S, the padded square canvas; with fixed_size the resize
target; default 1344), `data.fixed_size` (False), `data.min_size` (800), `data.max_size` (1333, at most
S), `data.scale_jitter` (() = none; training short sides: a tuple of sides drawn uniformly for mode
'choice', or (low, high) for an integer drawn uniformly in [low, high] for mode 'range'),
`data.scale_jitter_mode` ('choice'), `data.random_flip` (True), `data.max_instances` (100),
`data.with_masks` (False), `data.mask_crop_size` (112), `data.mask_size` (0) (instance_masks.py),
`data.ssd_augment` (False; not with masks).

Proposals from outside the network (Fast R-CNN, R-CNN), with `data.proposals` set ('selective_search'
or a file; keys and the cache: vision_jax/data/proposals.py): the proposals of the example's image
(original pixels, looked up by `image_id` in the split's `ProposalTable`, at most P =
`data.max_proposals` of them) get steps 1-3 exactly as the ground-truth boxes: scaled by the resize,
flipped with the same draw, clipped; those left without area are dropped (not counted). Output:
`proposals` float32 [P, 4] (x1, y1, x2, y2) network-input pixels, `proposal_valid` bool [P] (padding
rows: False, box 0), `proposal_scores` float32 [P] (the file's scores, 0 without; padding 0), in the
table's order. Not with `data.ssd_augment` (its crops would need the proposals too).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections
import tensorflow as tf

from vision_jax.data import instance_masks, ssd_augment, transforms
from vision_jax.data import proposals as proposal_data
from vision_jax.data.dataset_info import DatasetInfo

SCALE_JITTER_MODES = ("choice", "range")
_MAX_INT32 = 2**31 - 1


def add_detection_data_defaults(c: ml_collections.ConfigDict) -> None:
    """Adds the detection input keys (module docstring) with detectron2's COCO defaults."""
    c.data.image_size = 1344  # padded square canvas, a multiple of 64 (FPN P6) >= max_size
    c.data.fixed_size = False  # True: resize to image_size x image_size (SSD/YOLO)
    c.data.min_size = 800  # short side (evaluation; training without scale_jitter)
    c.data.max_size = 1333  # long side at most this
    c.data.scale_jitter = ()  # training short sides, e.g. (640, 672, 704, 736, 768, 800)
    c.data.scale_jitter_mode = "choice"  # 'choice' (one of scale_jitter) or 'range' ((low, high) inclusive)
    c.data.random_flip = True  # horizontal flip in training
    c.data.max_instances = 100  # ground-truth rows per image (padding has valid=False)
    instance_masks.add_instance_mask_defaults(c)  # with_masks, mask_crop_size, mask_size
    c.data.ssd_augment = False  # training: SSD's photometric distortion, expand, min-IoU crop
    proposal_data.add_proposal_defaults(c)  # data.proposals = '' (none), max_proposals, ... (proposals.py)


@dataclasses.dataclass(frozen=True)
class DetectionInputSettings:
    """The validated `data.*` keys of the module docstring."""

    image_size: int
    fixed_size: bool
    min_size: int
    max_size: int
    scale_jitter: tuple[int, ...]
    scale_jitter_mode: str
    random_flip: bool
    max_instances: int
    with_masks: bool
    mask_crop_size: int
    mask_size: int
    ssd_augment: bool
    proposals: str = ""
    max_proposals: int = 2000

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> "DetectionInputSettings":
        missing = [k for k in (f.name for f in dataclasses.fields(cls)) if k not in data]
        if missing:
            raise ValueError(f"config.data lacks {missing}: the task's add_config_defaults must call add_detection_data_defaults(c)")
        s = cls(
            image_size=int(data.image_size), fixed_size=bool(data.fixed_size), min_size=int(data.min_size),
            max_size=int(data.max_size), scale_jitter=tuple(int(v) for v in data.scale_jitter),
            scale_jitter_mode=str(data.scale_jitter_mode), random_flip=bool(data.random_flip),
            max_instances=int(data.max_instances), with_masks=bool(data.with_masks),
            mask_crop_size=int(data.mask_crop_size), mask_size=int(data.mask_size),
            ssd_augment=bool(data.ssd_augment), proposals=str(data.proposals), max_proposals=int(data.max_proposals),
        )
        for key in ("image_size", "min_size", "max_size", "max_instances", "mask_crop_size", "max_proposals"):
            if getattr(s, key) < 1:
                raise ValueError(f"config.data.{key}={getattr(s, key)} must be >= 1")
        if not s.fixed_size and s.max_size > s.image_size:
            raise ValueError(f"config.data.max_size={s.max_size} exceeds config.data.image_size={s.image_size}, the padded canvas; "
                             f"raise image_size or lower max_size")
        if s.ssd_augment and s.with_masks:
            raise ValueError("config.data.ssd_augment does not transform masks; it needs config.data.with_masks=False")
        if s.proposals and s.ssd_augment:
            raise ValueError("config.data.ssd_augment does not transform proposals; it needs config.data.proposals=''")
        if s.mask_size < 0:
            raise ValueError(f"config.data.mask_size={s.mask_size} must be >= 0 (0 = canvas size)")
        if s.scale_jitter_mode not in SCALE_JITTER_MODES:
            raise ValueError(f"config.data.scale_jitter_mode={s.scale_jitter_mode!r} must be one of {SCALE_JITTER_MODES}")
        if s.scale_jitter:
            if s.fixed_size:
                raise ValueError("config.data.scale_jitter applies only with config.data.fixed_size=False")
            if min(s.scale_jitter) < 1:
                raise ValueError(f"config.data.scale_jitter={s.scale_jitter} must hold positive short sides")
            if s.scale_jitter_mode == "range" and (len(s.scale_jitter) != 2 or s.scale_jitter[0] > s.scale_jitter[1]):
                raise ValueError(f"config.data.scale_jitter={s.scale_jitter} must be (low, high) with low <= high for mode 'range'")
        return s


def _random_short_side(settings: DetectionInputSettings, seed: tf.Tensor) -> tf.Tensor:
    """int32 scalar: one of scale_jitter ('choice') or uniform in [low, high] ('range')."""
    if settings.scale_jitter_mode == "range":
        low, high = settings.scale_jitter
        return tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high + 1, dtype=tf.int32)
    index = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=len(settings.scale_jitter), dtype=tf.int32)
    return tf.gather(tf.constant(settings.scale_jitter, tf.int32), index)


def resized_image_size(height: tf.Tensor, width: tf.Tensor, settings: DetectionInputSettings, short_side: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(new_height, new_width) int32 of step 1 of the module docstring."""
    if settings.fixed_size:
        return tf.constant(settings.image_size, tf.int32), tf.constant(settings.image_size, tf.int32)
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.minimum(tf.cast(short_side, tf.float64) / tf.minimum(h, w), settings.max_size / tf.maximum(h, w))
    new_height = tf.maximum(1, tf.cast(tf.floor(h * scale + 0.5), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.floor(w * scale + 0.5), tf.int32))
    return new_height, new_width


def _pad_rows(values: tf.Tensor, max_instances: int, pad_value) -> tf.Tensor:
    values = values[:max_instances]
    padded = tf.pad(values, [[0, max_instances - tf.shape(values)[0]]] + [[0, 0]] * (values.shape.rank - 1),
                    constant_values=pad_value)
    padded.set_shape([max_instances] + values.shape.as_list()[1:])
    return padded


def _proposal_fields(table: proposal_data.ProposalTable, image_id: tf.Tensor, scale: tf.Tensor, image: tf.Tensor,
                     flip_seed: tf.Tensor | None, limits: tf.Tensor, max_proposals: int) -> dict[str, tf.Tensor]:
    """The image's proposals through resize (scale (y, x)), flip (the GT boxes' draw: the same seed into
    the same function; `image` is the resized image, only its width is used) and clip -> the proposal
    fields of the module docstring."""
    boxes, scores = table.tf_lookup(image_id)
    boxes = boxes[:max_proposals] * tf.stack([scale[1], scale[0], scale[1], scale[0]])
    scores = scores[:max_proposals]
    if flip_seed is not None:
        _, boxes, _ = transforms.random_horizontal_flip(image, boxes, None, flip_seed)
    boxes = tf.clip_by_value(boxes, 0.0, limits)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)
    return {
        "proposals": _pad_rows(boxes, max_proposals, 0.0),
        "proposal_valid": tf.range(max_proposals) < tf.shape(boxes)[0],
        "proposal_scores": _pad_rows(scores, max_proposals, 0.0),
    }


def make_detection_preprocess(
    config: ml_collections.ConfigDict,
    info: DatasetInfo,
    train: bool,
    eval_masks: bool = True,
    *,
    split: str | None = None,
    proposal_table: proposal_data.ProposalTable | None = None,
) -> Callable[[dict, tf.Tensor], dict]:
    """fn(canonical example, seed int64 [2]) -> dict of fixed-shape tensors (module docstring).

    With data.with_masks, training batches carry `box_masks`; evaluation batches carry canvas-aligned
    `masks` when `eval_masks` (an evaluator that reads ground truth from the json needs none).
    With `data.proposals` set, the proposals of `split` (default: data.train_split when training, else
    data.eval_split) are computed or read here (proposals.proposal_table), unless `proposal_table` is
    given.

    Raises ValueError for invalid `data.*` keys, a dataset without boxes, or masks asked of a dataset
    without masks.
    """
    settings = DetectionInputSettings.from_config(config.data)
    if settings.proposals and proposal_table is None:
        split = split or (config.data.train_split if train else config.data.eval_split)
        proposal_table = proposal_data.proposal_table(config.data, split)
    if "boxes" not in info.has:
        raise ValueError(f"dataset {info.name!r} has no boxes (has {sorted(info.has)}); detection needs boxes")
    if settings.with_masks and "masks" not in info.has:
        raise ValueError(f"config.data.with_masks=True but dataset {info.name!r} has no instance masks (has {sorted(info.has)})")
    size = settings.image_size
    mask_canvas = settings.mask_size or size
    jitter = train and bool(settings.scale_jitter)
    flip = train and settings.random_flip

    def fn(example: dict, seed: tf.Tensor) -> dict:
        scale_seed, flip_seed = tf.unstack(tf.random.split(tf.cast(seed, tf.int64), 2))
        image = tf.cast(example["image"], tf.float32)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), [-1, 4])
        num = tf.shape(boxes)[0]
        fields = {
            "classes": tf.cast(example["classes"], tf.int32),
            "is_crowd": tf.cast(example["is_crowd"], tf.bool) if "is_crowd" in example else tf.zeros([num], tf.bool),
        }
        if "is_difficult" in example:
            fields["is_difficult"] = tf.cast(example["is_difficult"], tf.bool)

        if train and settings.ssd_augment:  # its own seed stream: the other draws stay as they were
            image, boxes, fields = ssd_augment.ssd_augment(image, boxes, fields, tf.random.experimental.stateless_fold_in(seed, 1))
            height, width, num = tf.shape(image)[0], tf.shape(image)[1], tf.shape(boxes)[0]
        short_side = _random_short_side(settings, scale_seed) if jitter else tf.constant(settings.min_size, tf.int32)
        new_height, new_width = resized_image_size(height, width, settings, short_side)
        image = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear")
        scale = tf.cast(tf.stack([new_height / height, new_width / width]), tf.float32)  # (y, x)
        boxes = boxes * tf.stack([scale[1], scale[0], scale[1], scale[0]])
        masks = None  # box masks in training, canvas masks in evaluation: both flip along their last axis
        if settings.with_masks and train:
            # Cropped at the clipped box (clipping commutes with the flip), in original mask pixels.
            limits = tf.cast(tf.stack([new_width, new_height, new_width, new_height]), tf.float32)
            crop_boxes = tf.clip_by_value(boxes, 0.0, limits) / tf.stack([scale[1], scale[0], scale[1], scale[0]])
            masks = instance_masks.box_masks(tf.cast(example["masks"], tf.uint8), crop_boxes, settings.mask_crop_size)
        elif settings.with_masks and eval_masks:
            # The resized image's extent on the mask canvas (= itself when mask_size is 0).
            ratio = mask_canvas / size
            mask_extent = tf.maximum(1, tf.cast(tf.floor(tf.cast(tf.stack([new_height, new_width]), tf.float64) * ratio + 0.5), tf.int32))
            masks = transforms.resize_masks(tf.cast(example["masks"], tf.uint8), mask_extent)
        resized_image = image  # before the flip: the proposals take the same flip draw from it
        if flip:
            image, boxes, masks = transforms.random_horizontal_flip(image, boxes, masks, flip_seed)

        limits = tf.cast(tf.stack([new_width, new_height, new_width, new_height]), tf.float32)
        boxes = tf.clip_by_value(boxes, 0.0, limits)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)
        fields = {key: tf.boolean_mask(values, keep) for key, values in fields.items()}
        dropped = num - tf.reduce_sum(tf.cast(keep, tf.int32))
        kept = tf.shape(boxes)[0]

        proposal_fields = {}
        if proposal_table is not None:
            proposal_fields = _proposal_fields(proposal_table, example["image_id"], scale, resized_image,
                                               flip_seed if flip else None, limits, settings.max_proposals)
        image = transforms.pad_to_size(transforms.normalize_image(image), (size, size))
        image_id = tf.cast(example["image_id"], tf.int64)
        id_check = tf.debugging.assert_less_equal(image_id, tf.constant(_MAX_INT32, tf.int64),
                                                  message="detection preprocess: image_id does not fit int32")
        with tf.control_dependencies([id_check]):
            image_id = tf.cast(image_id, tf.int32)
        out = {
            "image": image,
            "boxes": _pad_rows(boxes, settings.max_instances, 0.0),
            "classes": _pad_rows(fields["classes"], settings.max_instances, -1),
            "valid": tf.range(settings.max_instances) < kept,
            "is_crowd": _pad_rows(fields["is_crowd"], settings.max_instances, False),
            "image_info": tf.stack([tf.cast(height, tf.float32), tf.cast(width, tf.float32), scale[0], scale[1]]),
            "image_id": image_id,
            "dropped_degenerate_boxes": dropped + tf.cast(example.get("dropped_degenerate_boxes", 0), tf.int32),
            "dropped_excess_instances": tf.maximum(0, kept - settings.max_instances),
            **proposal_fields,
        }
        if "is_difficult" in fields:
            out["is_difficult"] = _pad_rows(fields["is_difficult"], settings.max_instances, False)
        if masks is not None and train:
            out["box_masks"] = _pad_rows(tf.boolean_mask(masks, keep), settings.max_instances, tf.constant(0, tf.uint8))
        elif masks is not None:
            masks = transforms.pad_masks_to_size(tf.boolean_mask(masks, keep), (mask_canvas, mask_canvas))
            out["masks"] = _pad_rows(masks, settings.max_instances, tf.constant(0, tf.uint8))
        return out

    return fn

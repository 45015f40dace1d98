"""R-CNN's test time (section 2.2): every proposal warped and run through the CNN (rcnn_regions.py), scored
for every class by the SVMs (or the fine-tuned softmax), moved by the class's box regressor, then per-class
greedy NMS at 0.3 and the top detections (vision_jax.ops.multiclass_detections, on the boxes after
regression: rcnn_test_bbox_regressor.m regresses the scored boxes, the VOC evaluation then suppresses).

    heads = heads_for(RCNNHeads.load(svm_path, box_regression_path), variant)
    regions = batch_regions(batch, include_ground_truth=False)                       # rcnn_regions.py
    outputs = region_outputs(forward, variables, images, image_sizes, regions, settings.regions_per_call)
    predictions = detect_batch(outputs, regions, heads, variant, batch, image_sizes, settings)
    # NumPy: the detections dict of the detector contract, boxes in network-input pixels
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.ops.postprocess import foreground_scores, multiclass_detections
from vision_jax.models.rcnn.rcnn_box_regression import apply_box_regressors
from vision_jax.models.rcnn.rcnn_regions import BatchRegions
from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings


@dataclasses.dataclass(frozen=True)
class Variant:
    """How regions are scored ('svm' | 'softmax') and whether boxes are regressed."""

    scorer: str
    box_regression: bool


@dataclasses.dataclass
class RCNNHeads:
    """What the SVM and box-regression stages trained (None where a stage has not run): SVM scores
    features [N, D] @ svm_weights [D, C] + svm_bias [C]; box deltas pooled [N, Dp] @ box_weights [C, Dp, 4]
    + box_biases [C, 4]."""

    svm_weights: np.ndarray | None = None
    svm_bias: np.ndarray | None = None
    box_weights: np.ndarray | None = None
    box_biases: np.ndarray | None = None

    @classmethod
    def load(cls, svm_path: str | None, box_regression_path: str | None) -> "RCNNHeads":
        heads = cls()
        if svm_path:
            with np.load(svm_path) as svm:
                heads.svm_weights, heads.svm_bias = svm["weights"], svm["bias"]
        if box_regression_path:
            with np.load(box_regression_path) as regression:
                heads.box_weights, heads.box_biases = regression["weights"], regression["biases"]
        return heads


@functools.partial(jax.jit, static_argnames=("scorer", "box_regression"))
def score_regions(outputs: dict, boxes: jax.Array, heads: dict, scorer: str, box_regression: bool):
    """Per region: class scores [N, C] and class-specific boxes [N, C, 4] (regions' own boxes without
    regression)."""
    if scorer == "svm":
        scores = outputs["features"] @ heads["svm_weights"] + heads["svm_bias"]
    else:
        scores = foreground_scores(outputs["logits"])
    num_classes = scores.shape[-1]
    if box_regression:
        class_boxes = apply_box_regressors(outputs["pooled"], boxes, heads["box_weights"], heads["box_biases"])
    else:
        class_boxes = jnp.broadcast_to(boxes[:, None, :], (boxes.shape[0], num_classes, 4))
    return scores, class_boxes


@functools.partial(jax.jit, static_argnames=("max_detections",))
def _postprocess(class_boxes, scores, valid, image_sizes, score_threshold, nms_threshold, max_detections):
    one = lambda b, s, v, size: multiclass_detections(b, s, size, score_threshold=score_threshold,
                                                      nms_threshold=nms_threshold, max_detections=max_detections,
                                                      valid=v)  # fmt: skip
    return jax.vmap(one)(class_boxes, scores, valid, image_sizes)


def postprocess(regions: BatchRegions, scores: np.ndarray, class_boxes: np.ndarray, batch_size: int,
                num_slots: int, image_sizes: np.ndarray, settings: RegionCNNSettings) -> dict[str, np.ndarray]:
    """The proposals' scores [R, C] and boxes [R, C, 4] laid back on the batch's proposal slots
    ([B, num_slots, ...]), then NMS per image -> the detections dict (NumPy) of the detector contract."""
    num_classes = scores.shape[-1]
    proposal = regions.slot >= 0
    slot_scores = np.zeros((batch_size, num_slots, num_classes), np.float32)
    slot_boxes = np.zeros((batch_size, num_slots, num_classes, 4), np.float32)
    slot_valid = np.zeros((batch_size, num_slots), bool)
    where = (regions.image_index[proposal], regions.slot[proposal])
    slot_scores[where], slot_boxes[where], slot_valid[where] = scores[proposal], class_boxes[proposal], True
    out = _postprocess(slot_boxes, slot_scores, slot_valid, np.asarray(image_sizes, np.float32),
                       settings.test_score_threshold, settings.test_nms_threshold, settings.test_max_detections)
    return {key: np.asarray(value) for key, value in out.items()}


def heads_for(heads: RCNNHeads, variant: Variant) -> dict[str, np.ndarray]:
    """The arrays score_regions needs for `variant`; a ValueError naming the missing stage."""
    arrays = {}
    if variant.scorer == "svm":
        if heads.svm_weights is None:
            raise ValueError("R-CNN's 'svm' scorer needs the SVM stage's output (svm.npz)")
        arrays.update(svm_weights=heads.svm_weights, svm_bias=heads.svm_bias)
    if variant.box_regression:
        if heads.box_weights is None:
            raise ValueError("R-CNN's box regression needs the box-regression stage's output (box_regression.npz)")
        arrays.update(box_weights=heads.box_weights, box_biases=heads.box_biases)
    return arrays


def padded_to_calls(outputs: dict[str, np.ndarray], boxes: np.ndarray, regions_per_call: int) -> tuple[dict, jax.Array]:
    """The regions' CNN outputs [R, ...] and boxes [R, 4] zero-padded to whole calls of regions_per_call rows,
    as the CNN ran, on the device: score_regions then compiles once per number of calls, not once per R."""
    count = len(boxes)
    padded = max(1, -(-count // regions_per_call)) * regions_per_call
    pad = lambda x: np.concatenate([x, np.zeros((padded - count, *x.shape[1:]), x.dtype)])
    return {k: jnp.asarray(pad(v)) for k, v in outputs.items()}, jnp.asarray(pad(np.asarray(boxes, np.float32)))


def detect_batch(outputs: dict[str, np.ndarray], regions: BatchRegions, heads: dict, variant: Variant,
                 batch: dict[str, np.ndarray], image_sizes: np.ndarray,
                 settings: RegionCNNSettings) -> dict[str, np.ndarray]:
    """A detection batch's detections (NumPy, network-input pixels, [B, test_max_detections, ...]) from its
    regions' CNN outputs (rcnn_regions.region_outputs): scored and regressed as `variant` says with the
    arrays `heads` (heads_for), then per-class NMS (postprocess). image_sizes: [B, 2] (h, w) resized."""
    device_outputs, device_boxes = padded_to_calls(outputs, regions.boxes, settings.regions_per_call)
    scores, class_boxes = score_regions(device_outputs, device_boxes, heads, variant.scorer, variant.box_regression)
    count = len(regions.boxes)
    return postprocess(regions, np.asarray(scores)[:count], np.asarray(class_boxes)[:count], len(batch["image"]),
                       batch["proposals"].shape[1], np.asarray(image_sizes), settings)

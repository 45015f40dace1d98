"""R-CNN's per-region CNN pass over detection batches: every valid region of every image of a batch (its
proposals, and with `include_ground_truth` its ground-truth boxes first) is warped and run through the CNN,
`regions_per_call` regions per jitted call (the last call padded), so that the cost follows the number of
real proposals, not the padded `data.max_proposals`.

    regions = batch_regions(batch, include_ground_truth=False)
    outputs = region_outputs(forward, variables, batch, regions, regions_per_call)   # NumPy [R, ...]
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings
from vision_jax.models.rcnn.region_warp import warp_regions_of_images


@dataclasses.dataclass
class BatchRegions:
    """The regions of one batch, image after image: image_index [R] (row of the batch), boxes [R, 4] (network-
    input pixels), slot [R] (the proposal's row in the batch's `proposals`, -1 for a ground-truth box),
    gt_class [R] (the ground-truth box's class, -1 for a proposal)."""

    image_index: np.ndarray
    boxes: np.ndarray
    slot: np.ndarray
    gt_class: np.ndarray

    def of_image(self, b: int) -> np.ndarray:
        return np.flatnonzero(self.image_index == b)


def batch_regions(batch: dict[str, np.ndarray], include_ground_truth: bool) -> BatchRegions:
    """The valid regions of a detection batch with proposals (padding examples skipped)."""
    if "proposals" not in batch:
        raise ValueError("R-CNN needs proposals in the batch: set config.data.proposals ('selective_search' or a file)")
    image_index, boxes, slot, gt_class = [], [], [], []
    example_valid = np.asarray(batch.get("example_valid", np.ones(len(batch["image"]), bool)), bool)
    for b in np.flatnonzero(example_valid):
        if include_ground_truth:
            real = np.asarray(batch["valid"][b], bool) & ~np.asarray(batch.get("is_crowd", np.zeros_like(batch["valid"]))[b], bool)
            rows = np.flatnonzero(real)
            image_index.append(np.full(len(rows), b))
            boxes.append(np.asarray(batch["boxes"][b])[rows])
            slot.append(np.full(len(rows), -1))
            gt_class.append(np.asarray(batch["classes"][b])[rows])
        rows = np.flatnonzero(np.asarray(batch["proposal_valid"][b], bool))
        image_index.append(np.full(len(rows), b))
        boxes.append(np.asarray(batch["proposals"][b])[rows])
        slot.append(rows)
        gt_class.append(np.full(len(rows), -1))
    join = lambda parts, dtype, shape: np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)
    return BatchRegions(join(image_index, np.int32, (0,)), join(boxes, np.float32, (0, 4)),
                        join(slot, np.int64, (0,)), join(gt_class, np.int64, (0,)))  # fmt: skip


def make_region_forward(model, settings: RegionCNNSettings) -> Callable:
    """jit(fn(variables, images [B, H, W, 3], image_sizes [B, 2], image_index [N], boxes [N, 4]) -> the CNN's
    outputs {'logits', 'features', 'pooled'} for the N warped regions)."""

    def forward(variables, images, image_sizes, image_index, boxes):
        crops = warp_regions_of_images(images, image_index, boxes, image_sizes, crop_size=settings.crop_size,
                                       context_padding=settings.padding)  # fmt: skip
        return model.apply(variables, crops.astype(images.dtype), train=False)

    return jax.jit(forward)


def region_outputs(forward: Callable, variables, images: jax.Array, image_sizes: jax.Array, regions: BatchRegions,
                   regions_per_call: int) -> dict[str, np.ndarray]:
    """The CNN's outputs for every region, NumPy float32 [R, ...], in calls of regions_per_call regions."""
    count = len(regions.boxes)
    padded = max(1, -(-count // regions_per_call)) * regions_per_call
    index = np.zeros(padded, np.int32)
    boxes = np.tile(np.asarray([[0.0, 0.0, 1.0, 1.0]], np.float32), (padded, 1))  # padding: a 1-pixel region
    index[:count], boxes[:count] = regions.image_index, regions.boxes
    parts = [forward(variables, images, image_sizes, jnp.asarray(index[i : i + regions_per_call]),
                     jnp.asarray(boxes[i : i + regions_per_call]))
             for i in range(0, padded, regions_per_call)]  # fmt: skip
    return {key: np.concatenate([np.asarray(p[key]) for p in parts])[:count] for key in parts[0]}

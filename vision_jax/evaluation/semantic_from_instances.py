"""Instance segmentation read as semantic segmentation: detections' masks merged into a label map.

A pixel takes the class (+1) of the highest-scoring detection whose mask covers it, among the
detections scoring at least `score_threshold` (0.5 by default, the detection pictures' threshold:
below it a detection is more likely wrong than right, and in a label map a false positive costs
pixels of another class); a pixel no such mask covers is background (0). Masks are pasted at the
original resolution (mask_paste.py, detectron2's paste, threshold 0.5) on boxes mapped back to
original pixels, as the COCO evaluator pastes them, so the label map lies on the same pixels as a
semantic model's. Labels: 0 = background, k + 1 = detection class k (the shapes scenes' semantic
labels, vision_jax/data/shapes_builder.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vision_jax.evaluation.coco import boxes_to_original, detection_valid_mask
from vision_jax.evaluation.mask_paste import paste_masks

DEFAULT_SCORE_THRESHOLD = 0.5


def label_map_from_instances(masks: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                             score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:  # fmt: skip
    """int32 [H, W] label map (module docstring) from bool masks [K, H, W], scores [K], classes [K] in 0..C-1."""
    masks, scores, classes = np.asarray(masks, bool), np.asarray(scores, np.float64), np.asarray(classes, np.int64)
    labels = np.zeros(masks.shape[1:], np.int32)
    # Paint in increasing score order: each later (higher-scoring) detection overwrites the earlier.
    for k in np.argsort(scores, kind="stable"):
        if scores[k] >= score_threshold:
            labels[masks[k]] = classes[k] + 1
    return labels


def label_maps_from_predictions(predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                                score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """(image_id, int32 [h, w] label map at the original resolution) for each real image of a detection
    batch; predictions as the detection task returns them (boxes in network-input pixels, box-relative
    'masks' [B, K, M, M]), batch with 'image_info' and 'image_id' (data/detection_inputs.py)."""
    valid = detection_valid_mask(predictions)
    real = np.asarray(batch.get("example_valid", np.ones(len(batch["image_info"]), bool)), bool)
    out = []
    for b in np.flatnonzero(real):
        info = np.asarray(batch["image_info"][b], np.float64)
        height, width = int(round(info[0])), int(round(info[1]))
        keep = np.flatnonzero(valid[b])
        boxes = boxes_to_original(np.asarray(predictions["boxes"][b])[keep], info)
        masks = list(paste_masks(np.asarray(predictions["masks"][b])[keep], boxes, height, width))
        masks = np.stack(masks) if masks else np.zeros((0, height, width), bool)
        scores = np.asarray(predictions["scores"][b])[keep]
        classes = np.asarray(predictions["classes"][b])[keep]
        out.append((int(batch["image_id"][b]), label_map_from_instances(masks, scores, classes, score_threshold)))
    return out

"""PASCAL VOC detection AP: VOC2007 11-point and VOC2010+ all-point interpolation, difficult objects ignored.

Per class, as the VOC devkit (and py-faster-rcnn's voc_eval) does: the class's detections over all
images are sorted by score (descending; ties keep arrival order); each takes the ground-truth box of its
image and class with the highest IoU; if that IoU > `iou_threshold` (strictly, 0.5): a difficult (or
crowd) box makes the detection neither true nor false positive, a not yet matched box makes it a true
positive (and matched), an already matched box a false positive; otherwise it is a false positive.
Recall = TP / (non-difficult ground truth), precision = TP / (TP + FP), cumulated in score order.

- all-point (VOC2010+): precision made non-increasing from the right, summed over recall steps;
- 11-point (VOC2007): mean over recall r in {0, 0.1, ..., 1} of the highest precision at recall >= r.

Boxes are continuous (x1, y1, x2, y2) pixels, IoU without the devkit's "+1" on widths (the pipelines
here convert VOC's 1-based inclusive pixel boxes to continuous ones; detection_tfds.py). Classes with no
non-difficult ground truth are left out of the mean.

`VocEvaluator.update(predictions, batch)` takes the batches of detection_inputs.py and the detections
of every detector (coco.py's module docstring: boxes, scores, classes, valid / num_detections); boxes
map back to original pixels with `image_info` first. Ground truth: `boxes`, `classes`, `valid`, and
`is_difficult` / `is_crowd` when present. `result()` -> `AP50` (the chosen interpolation),
`AP50_11point`, `AP50_allpoint` and `AP50/<class name>`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from vision_jax.evaluation.coco import detection_valid_mask, boxes_to_original


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from cumulative recall/precision [D] in score order (module docstring); 0 for no detection."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        # np.arange(0, 1.1, 0.1), as py-faster-rcnn and detectron2 step it (0.3 is 0.30000000000000004...),
        # so that recalls on a step (e.g. 3/5) score as in those evaluations.
        points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in np.arange(0.0, 1.1, 0.1)]
        return float(np.mean(points))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] (x1, y1, x2, y2) -> float64 IoU [N, M]; 0 where the union is empty."""
    a, b = np.asarray(boxes1, np.float64)[:, None], np.asarray(boxes2, np.float64)[None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class VocEvaluator:
    """Accumulates detections and ground truth per image; `result()` computes VOC AP per class."""

    def __init__(self, class_names: Sequence[str], *, iou_threshold: float = 0.5, use_07_metric: bool = False):
        self.class_names = tuple(class_names)
        self.iou_threshold = float(iou_threshold)
        self.use_07_metric = bool(use_07_metric)
        # Per image: ground truth (boxes [G, 4], classes [G], ignored [G]) and detections
        # (boxes [D, 4], scores [D], classes [D]), in original pixels.
        self.ground_truth: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        rows = np.flatnonzero(np.asarray(batch.get("example_valid", np.ones(len(batch["image_info"]), bool)), bool))
        detection_valid = detection_valid_mask(predictions)
        num_classes = len(self.class_names)
        for b in rows:
            info = np.asarray(batch["image_info"][b], np.float64)
            real = np.flatnonzero(np.asarray(batch["valid"][b], bool))
            ignored = np.zeros(len(real), bool)
            for key in ("is_difficult", "is_crowd"):
                if key in batch:
                    ignored |= np.asarray(batch[key][b], bool)[real]
            self.ground_truth.append((
                boxes_to_original(np.asarray(batch["boxes"][b])[real], info),
                np.asarray(batch["classes"][b], np.int64)[real],
                ignored,
            ))
            keep = np.flatnonzero(detection_valid[b])
            classes = np.asarray(predictions["classes"][b], np.int64)[keep]
            if np.any((classes < 0) | (classes >= num_classes)):
                raise ValueError(f"VocEvaluator: predicted classes {np.unique(classes)} outside 0..{num_classes - 1}")
            self.detections.append((
                boxes_to_original(np.asarray(predictions["boxes"][b])[keep], info),
                np.asarray(predictions["scores"][b], np.float64)[keep],
                classes,
            ))

    def class_precision_recall(self, class_index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(recall [D], precision [D], number of non-ignored ground-truth boxes) for one class."""
        image_of, boxes, scores = [], [], []
        for image, (det_boxes, det_scores, det_classes) in enumerate(self.detections):
            mine = det_classes == class_index
            image_of += [image] * int(mine.sum())
            boxes.append(det_boxes[mine])
            scores.append(det_scores[mine])
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        scores = np.concatenate(scores) if scores else np.zeros((0,))
        order = np.argsort(-scores, kind="stable")
        gt = [(g[c == class_index], ig[c == class_index]) for g, c, ig in self.ground_truth]
        matched = [np.zeros(len(g), bool) for g, _ in gt]
        num_positives = int(sum((~ig).sum() for _, ig in gt))
        tp, fp = np.zeros(len(order)), np.zeros(len(order))
        for rank, d in enumerate(order):
            gt_boxes, gt_ignored = gt[image_of[d]]
            if len(gt_boxes) == 0:
                fp[rank] = 1
                continue
            ious = pairwise_iou(boxes[d:d + 1], gt_boxes)[0]
            best = int(np.argmax(ious))
            if ious[best] > self.iou_threshold:
                if gt_ignored[best]:
                    continue
                if not matched[image_of[d]][best]:
                    tp[rank], matched[image_of[d]][best] = 1, True
                else:
                    fp[rank] = 1
            else:
                fp[rank] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / max(num_positives, 1)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return recall, precision, num_positives

    def result(self) -> dict[str, float]:
        """AP50 (chosen interpolation), AP50_11point, AP50_allpoint, AP50/<class>; ValueError if no image."""
        if not self.ground_truth:
            raise ValueError("VocEvaluator.result: no images were evaluated (all rows had example_valid=False?)")
        per_class = {}
        eleven, all_point = [], []
        for c, name in enumerate(self.class_names):
            recall, precision, num_positives = self.class_precision_recall(c)
            if num_positives == 0:
                continue
            eleven.append(voc_ap(recall, precision, True))
            all_point.append(voc_ap(recall, precision, False))
            per_class[f"AP50/{name}"] = eleven[-1] if self.use_07_metric else all_point[-1]
        mean = lambda values: float(np.mean(values)) if values else 0.0
        out = {"AP50_11point": mean(eleven), "AP50_allpoint": mean(all_point)}
        out["AP50"] = out["AP50_11point"] if self.use_07_metric else out["AP50_allpoint"]
        return {**out, **per_class}

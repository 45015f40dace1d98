"""Single-object localization metrics: class accuracy, mean IoU and correct localization.

`correct_localization` is the ImageNet localization criterion used as a rate: the predicted
class is right and the predicted box overlaps the ground truth with IoU >= 0.5.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def paired_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of boxes1[i] with boxes2[i]; [N, 4] (x1, y1, x2, y2) each -> [N]; 0 for empty unions."""
    b1, b2 = np.asarray(boxes1, np.float64), np.asarray(boxes2, np.float64)
    wh = np.clip(np.minimum(b1[:, 2:], b2[:, 2:]) - np.maximum(b1[:, :2], b2[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area(b1) + area(b2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class LocalizationEvaluator:
    """update(predictions={'logits': [B, C], 'boxes': [B, 4] xyxy},
    batch={'label': [B], 'box_xyxy': [B, 4] xyxy in the same units, 'example_valid': [B]})."""

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self.count = 0
        self.correct_class = 0
        self.correct_localization = 0
        self.iou_sum = 0.0

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        valid = np.asarray(batch["example_valid"], bool)
        right_class = np.argmax(predictions["logits"][valid], axis=-1) == batch["label"][valid]
        iou = paired_iou(predictions["boxes"][valid], batch["box_xyxy"][valid])
        self.count += int(valid.sum())
        self.correct_class += int(right_class.sum())
        self.correct_localization += int((right_class & (iou >= self.iou_threshold)).sum())
        self.iou_sum += float(iou.sum())

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {
            "accuracy": self.correct_class / n,
            "mean_iou": self.iou_sum / n,
            "correct_localization": self.correct_localization / n,
        }

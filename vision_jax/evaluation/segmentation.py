"""Semantic-segmentation metrics from a confusion matrix accumulated over batches (and processes).

The four metrics of the FCN paper (Long et al., 2015, section 5), with n_ij = pixels of true class i
predicted as class j, t_i = sum_j n_ij (pixels of class i) and n_cl classes:

    pixel_accuracy          sum_i n_ii / sum_i t_i
    mean_class_accuracy     (1 / n_cl) sum_i n_ii / t_i
    mIoU                    (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency_weighted_iou  (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Pixels whose true label is `ignore_index` (255: void, border, padding) are left out entirely. As in
the FCN reference code (score.py), a class that never occurs in the ground truth is left out of the
mean class accuracy, and a class that occurs in neither the ground truth nor the predictions is left
out of the mIoU (a class predicted but never true has IoU 0 and counts). `IoU/<class name>` gives
each class's IoU (NaN when undefined).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """int64 [C, C] counts, rows = true class, columns = predicted class, over pixels not ignored.

    labels, predictions: integer arrays of the same shape. Raises ValueError for a true label outside
    [0, C) other than ignore_index, or a prediction outside [0, C) on a pixel that counts.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    predictions = np.asarray(predictions).astype(np.int64, copy=False)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have the same shape")
    counted = labels != ignore_index
    labels, predictions = labels[counted], predictions[counted]
    for what, values in (("true label", labels), ("predicted label", predictions)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(
                f"{what} {int(values[bad][0])} is outside [0, {num_classes}) and is not the ignore index {ignore_index}"
            )
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """The four FCN metrics of an int [C, C] confusion matrix (module docstring); NaN when no pixel counts."""
    confusion = np.asarray(confusion, np.float64)
    true_per_class = confusion.sum(axis=1)
    predicted_per_class = confusion.sum(axis=0)
    correct = np.diag(confusion)
    total = true_per_class.sum()
    union = true_per_class + predicted_per_class - correct
    with np.errstate(divide="ignore", invalid="ignore"):
        class_accuracy = np.where(true_per_class > 0, correct / true_per_class, np.nan)
        iou = np.where(union > 0, correct / union, np.nan)
        fw = np.nansum(true_per_class * np.nan_to_num(iou)) / total if total else np.nan

    def nanmean(values):
        return float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else float("nan")

    return {
        "pixel_accuracy": float(correct.sum() / total) if total else float("nan"),
        "mean_class_accuracy": nanmean(class_accuracy),
        "mIoU": nanmean(iou),
        "frequency_weighted_iou": float(fw),
    }


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """float64 [C]: IoU of each class, NaN where the class is in neither truth nor predictions."""
    confusion = np.asarray(confusion, np.float64)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, np.diag(confusion) / union, np.nan)


class SegmentationEvaluator:
    """Accumulates a confusion matrix over eval batches on the host.

    update(predictions, batch): predictions['labels'] int [B, H, W] (the task's predict output) against
    batch['segmentation'] int [B, H, W] (255 = ignore); rows with batch['example_valid'] == False
    (padding of the last batch) are skipped.
    result(): {'pixel_accuracy', 'mean_class_accuracy', 'mIoU', 'frequency_weighted_iou',
    'IoU/<class name>' per class}.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = IGNORE_INDEX):
        if len(class_names) < 1:
            raise ValueError("SegmentationEvaluator needs at least one class name")
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        valid = np.asarray(batch["example_valid"], bool)
        labels = np.asarray(batch["segmentation"])[valid]
        predicted = np.asarray(predictions["labels"])[valid]
        self.confusion += confusion_matrix(labels, predicted, self.num_classes, self.ignore_index)

    def merge(self, other: SegmentationEvaluator) -> None:
        """Adds another evaluator's counts (e.g. one gathered from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge evaluators of {other.num_classes} and {self.num_classes} classes")
        self.confusion += other.confusion

    def result(self) -> dict[str, float]:
        results = metrics_from_confusion(self.confusion)
        for name, value in zip(self.class_names, per_class_iou(self.confusion)):
            results[f"IoU/{name}"] = float(value)
        return results

"""Top-1 / top-5 accuracy and mean cross-entropy, accumulated over an eval split."""

from __future__ import annotations

from typing import Mapping

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class ClassificationEvaluator:
    """update(predictions={'logits': [B, C]}, batch={'label': [B], 'example_valid': [B]})."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.count = 0
        self.correct_top1 = 0
        self.correct_top5 = 0
        self.cross_entropy = 0.0

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        valid = np.asarray(batch["example_valid"], bool)
        logits = np.asarray(predictions["logits"], np.float64)[valid]
        labels = np.asarray(batch["label"], np.int64)[valid]
        if len(labels) == 0:
            return
        # Rank of the true class = number of classes scored strictly higher (ties favour the label).
        true_logit = np.take_along_axis(logits, labels[:, None], axis=1)
        rank = (logits > true_logit).sum(axis=1)
        self.correct_top1 += int((rank < 1).sum())
        self.correct_top5 += int((rank < 5).sum())
        self.cross_entropy -= float(np.take_along_axis(log_softmax(logits), labels[:, None], axis=1).sum())
        self.count += len(labels)

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"accuracy": self.correct_top1 / n, "loss": self.cross_entropy / n}
        if self.num_classes > 5:
            out["top5_accuracy"] = self.correct_top5 / n
        return out

"""The FCN paper's four metrics from the accumulated confusion matrix, against a per-class NumPy loop
written from the formulas, on random labels and predictions with ignored pixels and padded rows."""

import numpy as np
import pytest

from vision_jax.evaluation.segmentation import SegmentationEvaluator, confusion_matrix


def reference_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore: int = 255) -> dict:
    """From the definitions, class by class with boolean masks (no confusion matrix)."""
    counted = labels != ignore
    truth, guess = labels[counted], predictions[counted]
    accuracies, ious, weighted = [], [], 0.0
    for k in range(num_classes):
        is_true, is_guess = truth == k, guess == k
        hits = np.sum(is_true & is_guess)
        if is_true.sum() > 0:
            accuracies.append(hits / is_true.sum())
        union = np.sum(is_true | is_guess)
        if union > 0:
            ious.append(hits / union)
            weighted += is_true.sum() * hits / union
    return {
        "pixel_accuracy": np.mean(truth == guess),
        "mean_class_accuracy": np.mean(accuracies),
        "mIoU": np.mean(ious),
        "frequency_weighted_iou": weighted / truth.size,
    }


def random_batches(rng, num_classes, num_batches, batch, height, width):
    """Labels biased to a few classes (some classes never true, some never predicted), ~15% ignored,
    predictions right ~60% of the time; the last batch has padded rows."""
    batches = []
    for index in range(num_batches):
        probabilities = rng.dirichlet(np.full(num_classes, 0.3))
        labels = rng.choice(num_classes, size=(batch, height, width), p=probabilities)
        labels[rng.uniform(size=labels.shape) < 0.15] = 255
        predictions = np.where(
            rng.uniform(size=labels.shape) < 0.6,
            np.where(labels == 255, 0, labels),
            rng.integers(0, num_classes, size=labels.shape),
        )
        valid = np.ones(batch, bool)
        if index == num_batches - 1:
            valid[rng.integers(1, batch) :] = False
            predictions[~valid] = rng.integers(0, 10**6)  # garbage on padding must not be read
        batches.append(
            (
                {"labels": predictions.astype(np.int32)},
                {"segmentation": labels.astype(np.int32), "example_valid": valid},
            )
        )
    return batches


@pytest.mark.parametrize("num_classes", [2, 6, 21])
def test_evaluator_equals_numpy_reference_over_batches(num_classes, seed):
    rng = np.random.default_rng(seed)
    batches = random_batches(rng, num_classes, num_batches=3, batch=4, height=int(rng.integers(5, 40)), width=33)
    evaluator = SegmentationEvaluator([f"c{k}" for k in range(num_classes)])
    for predictions, batch in batches:
        evaluator.update(predictions, batch)
    result = evaluator.result()
    labels = np.concatenate([b["segmentation"][b["example_valid"]] for _, b in batches])
    predicted = np.concatenate([p["labels"][b["example_valid"]] for p, b in batches])
    expected = reference_metrics(labels, predicted, num_classes)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-12), f"seed={seed} {key}"
    for k in range(num_classes):
        union = np.sum(((labels == k) | (predicted == k)) & (labels != 255))
        if union:
            iou = np.sum((labels == k) & (predicted == k)) / union
            assert result[f"IoU/c{k}"] == pytest.approx(iou, rel=1e-12), f"seed={seed} class {k}"
        else:
            assert np.isnan(result[f"IoU/c{k}"])


def test_merging_evaluators_equals_one_evaluator(seed):
    rng = np.random.default_rng(seed)
    batches = random_batches(rng, 5, num_batches=4, batch=2, height=9, width=7)
    whole, first, second = (SegmentationEvaluator(list("abcde")) for _ in range(3))
    for index, (predictions, batch) in enumerate(batches):
        whole.update(predictions, batch)
        (first if index % 2 else second).update(predictions, batch)
    first.merge(second)
    np.testing.assert_array_equal(first.confusion, whole.confusion)


def test_confusion_rows_are_truth_and_columns_predictions():
    labels = np.array([0, 0, 1, 2, 255])
    predictions = np.array([0, 1, 1, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)


def test_out_of_range_labels_and_predictions_are_refused():
    with pytest.raises(ValueError, match="true label 7 is outside"):
        confusion_matrix(np.array([7]), np.array([0]), 3)
    with pytest.raises(ValueError, match="predicted label -1 is outside"):
        confusion_matrix(np.array([1]), np.array([-1]), 3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)

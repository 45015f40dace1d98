"""VocEvaluator: VOC07 11-point and VOC2010+ all-point AP on hand-computed cases, difficult objects ignored."""
from __future__ import annotations

import numpy as np
import pytest

from vision_jax.evaluation.voc import VocEvaluator, voc_ap


def batch_and_predictions(images: list[dict], max_instances: int = 6, k: int = 8) -> tuple[dict, dict]:
    """Batch (network pixels = original * (sx, sy)) and predictions from images in original pixels:
    {h, w, sy, sx, boxes, classes, difficult, det_boxes, det_scores, det_classes}."""
    b = len(images)
    batch = {"boxes": np.zeros((b, max_instances, 4)), "classes": -np.ones((b, max_instances), np.int32),
             "valid": np.zeros((b, max_instances), bool), "is_difficult": np.zeros((b, max_instances), bool),
             "is_crowd": np.zeros((b, max_instances), bool), "image_info": np.zeros((b, 4), np.float32),
             "example_valid": np.ones(b, bool)}
    predictions = {"boxes": np.zeros((b, k, 4)), "scores": np.zeros((b, k)), "classes": np.zeros((b, k), np.int32),
                   "valid": np.zeros((b, k), bool)}
    for i, im in enumerate(images):
        scale = np.array([im["sx"], im["sy"], im["sx"], im["sy"]])
        n, d = len(im["boxes"]), len(im["det_boxes"])
        batch["boxes"][i, :n] = np.asarray(im["boxes"], float) * scale
        batch["classes"][i, :n], batch["valid"][i, :n] = im["classes"], True
        batch["is_difficult"][i, :n] = im["difficult"]
        batch["image_info"][i] = [im["h"], im["w"], im["sy"], im["sx"]]
        predictions["boxes"][i, :d] = np.asarray(im["det_boxes"], float) * scale
        predictions["scores"][i, :d], predictions["classes"][i, :d] = im["det_scores"], im["det_classes"]
        predictions["valid"][i, :d] = True
    return batch, predictions


HAND_CASE = [
    # image 1: g1 (normal), g2 (difficult); detections a = g1 (.9), b on g2 (.8), e = g1 again (.5)
    {"h": 40, "w": 100, "sy": 0.5, "sx": 1.5,
     "boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "classes": [0, 0], "difficult": [False, True],
     "det_boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10]], "det_scores": [0.9, 0.8, 0.5], "det_classes": [0, 0, 0]},
    # image 2: g3, g4; detections c far away (.7), d = g3 (.6), f = g4 shifted 2 px (.4, IoU 80/120 = .667)
    {"h": 100, "w": 100, "sy": 2.0, "sx": 0.25,
     "boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "classes": [0, 0], "difficult": [False, False],
     "det_boxes": [[80, 80, 90, 90], [0, 0, 10, 10], [52, 50, 62, 60]], "det_scores": [0.7, 0.6, 0.4], "det_classes": [0, 0, 0]},
]


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_hand_computed_ap_with_a_difficult_object_and_a_duplicate(use_07_metric):
    """3 positives (g1, g3, g4; g2 is difficult). By score: a TP, b ignored (on a difficult object: neither
    TP nor FP), c FP, d TP, e FP (g1 already taken), f TP.
    Cumulated over the 6 ranks: TP 1 1 1 2 2 3, FP 0 0 1 1 2 2 ->
      recall    1/3 1/3 1/3 2/3 2/3 1
      precision 1   1   1/2 2/3 1/2 3/5
    all-point: precision envelope from the right at the recall steps: 1 (to 1/3), 2/3 (to 2/3), 3/5 (to 1):
      AP = (1 + 2/3 + 3/5) / 3 = 34/45
    11-point: max precision at recall >= t: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t = .7 ... 1 -> 3/5:
      AP = (4 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4/11"""
    batch, predictions = batch_and_predictions(HAND_CASE)
    evaluator = VocEvaluator(("thing", "other"), use_07_metric=use_07_metric)
    evaluator.update(predictions, batch)
    result = evaluator.result()
    assert result["AP50_allpoint"] == pytest.approx(34 / 45, abs=1e-12)
    assert result["AP50_11point"] == pytest.approx(8.4 / 11, abs=1e-12)
    assert result["AP50"] == result["AP50_11point" if use_07_metric else "AP50_allpoint"]
    assert result["AP50/thing"] == result["AP50"] and "AP50/other" not in result  # 'other' has no ground truth


def test_predictions_equal_to_the_ground_truth_give_ap_one(rng, seed):
    images = []
    for _ in range(5):
        h, w = (int(v) for v in rng.integers(30, 200, 2))
        n = int(rng.integers(1, 6))
        x1, y1 = rng.uniform(0, w - 3, n), rng.uniform(0, h - 3, n)
        boxes = np.stack([x1, y1, x1 + rng.uniform(2, w - x1), y1 + rng.uniform(2, h - y1)], axis=1)
        classes = rng.integers(0, 4, n)
        difficult = rng.random(n) < 0.2
        images.append({"h": h, "w": w, "sy": float(np.float32(rng.uniform(0.5, 2))), "sx": float(np.float32(rng.uniform(0.5, 2))),
                       "boxes": boxes, "classes": classes, "difficult": difficult,
                       "det_boxes": boxes, "det_scores": rng.uniform(0, 1, n), "det_classes": classes})
    evaluator = VocEvaluator(tuple("abcd"))
    for start in (0, 3):
        batch, predictions = batch_and_predictions(images[start:start + 3])
        evaluator.update(predictions, batch)
    result = evaluator.result()
    assert result["AP50_allpoint"] == pytest.approx(1.0) and result["AP50_11point"] == pytest.approx(1.0), f"{result} seed={seed}"


def test_voc_ap_interpolations_on_a_textbook_curve():
    """recall .2 .4 .4 .8 with precision 1 .5 .67 .5:
    all-point: envelope 1 (to .2), .67 (to .4), .5 (to .8), nothing after: .2*1 + .2*.67 + .4*.5 = .534;
    11-point: t = 0, .1, .2 -> 1; .3, .4 -> .67; .5 ... .8 -> .5; .9, 1 -> 0: (3 + 2*.67 + 4*.5) / 11 = 6.34/11."""
    recall, precision = np.array([0.2, 0.4, 0.4, 0.8]), np.array([1.0, 0.5, 0.67, 0.5])
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.534, abs=1e-12)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(6.34 / 11, abs=1e-12)


def test_padded_examples_are_skipped_and_no_images_is_an_error():
    batch, predictions = batch_and_predictions(HAND_CASE)
    batch["example_valid"][1] = False  # image 2 is padding: only image 1 counts -> a TP, b ignored, e FP: AP 1
    evaluator = VocEvaluator(("thing",))
    evaluator.update(predictions, batch)
    assert evaluator.result()["AP50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no images were evaluated"):
        VocEvaluator(("thing",)).result()

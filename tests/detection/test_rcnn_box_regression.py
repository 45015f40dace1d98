"""R-CNN's box regression (vision_jax/models/rcnn/rcnn_box_regression.py): targets against the paper's
appendix C in float64 NumPy, their inverse through vision_jax.ops.decode_boxes, the ridge solution against
scikit-learn's Ridge, and the fitted regressors moving proposals onto their boxes."""

import jax
import numpy as np
import pytest

import vision_jax.ops as vops
from vision_jax.models.rcnn.rcnn_box_regression import (
    apply_box_regressors,
    fit_box_regressors,
    regression_examples,
    regression_targets,
    ridge_regression,
)


def random_boxes(rng, count):
    x1, y1 = rng.uniform(0, 100, (2, count))
    w, h = rng.uniform(2, 60, (2, count))
    return np.stack([x1, y1, x1 + w, y1 + h], 1)


def test_targets_match_appendix_c_and_decode_back(rng, seed):
    proposals, truth = random_boxes(rng, 40), random_boxes(rng, 40)
    targets = regression_targets(proposals, truth)
    for (px1, py1, px2, py2), (gx1, gy1, gx2, gy2), t in zip(proposals, truth, targets):
        pw, ph, gw, gh = px2 - px1, py2 - py1, gx2 - gx1, gy2 - gy1
        paper = [(gx1 + gw / 2 - (px1 + pw / 2)) / pw, (gy1 + gh / 2 - (py1 + ph / 2)) / ph, np.log(gw / pw), np.log(gh / ph)]
        np.testing.assert_allclose(t, paper, rtol=1e-12, atol=1e-12, err_msg=f"seed={seed}")
    decoded = np.asarray(jax.jit(vops.decode_boxes)(targets.astype(np.float32), proposals.astype(np.float32)))
    np.testing.assert_allclose(decoded, truth, atol=2e-3, err_msg=f"seed={seed}")
    with pytest.raises(ValueError, match="has no area"):
        regression_targets(np.array([[0, 0, 0, 5.0]]), np.array([[0, 0, 3, 5.0]]))


def test_examples_are_regions_above_the_overlap_paired_with_their_best_box(rng, seed):
    truth = np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float64)
    regions = np.concatenate([truth, truth + rng.uniform(-4, 4, (2, 4)), random_boxes(rng, 30)])
    rows, targets, classes = regression_examples(regions, truth, np.array([3, 1]), 0.6)
    iou = lambda a, b: max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1])) / (
        (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
        - max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1])))
    expected = [r for r in range(len(regions)) if max(iou(regions[r], g) for g in truth) > 0.6]
    assert rows.tolist() == expected and {0, 1} <= set(rows.tolist()), f"seed={seed}"
    for row, target, cls in zip(rows, targets, classes):
        best = int(np.argmax([iou(regions[row], g) for g in truth]))
        assert cls == [3, 1][best]
        np.testing.assert_allclose(target, regression_targets(regions[row : row + 1], truth[best : best + 1])[0])


def test_ridge_is_sklearn_ridge_with_the_bias_feature_regularised(rng, seed):
    from sklearn.linear_model import Ridge

    a = np.concatenate([rng.normal(0, 5, (60, 7)), np.ones((60, 1))], axis=1)
    y = rng.normal(0, 1, (60, 4))
    expected = Ridge(alpha=1000.0, fit_intercept=False, solver="cholesky").fit(a, y).coef_.T
    np.testing.assert_allclose(ridge_regression(a, y, 1000.0), expected, rtol=1e-8, atol=1e-12, err_msg=f"seed={seed}")


def test_fitted_regressors_move_proposals_onto_their_boxes(rng, seed):
    """Features that encode the targets linearly: a weakly regularised fit must recover the ground truth,
    class by class, through the folded affine map and the JAX decoder."""
    num, dim = 400, 12
    proposals = random_boxes(rng, num)
    mixing = rng.normal(0, 1, (4, dim))
    targets = rng.normal(0, 0.1, (num, 4))
    centres = (proposals[:, :2] + proposals[:, 2:]) / 2 + targets[:, :2] * (proposals[:, 2:] - proposals[:, :2])
    sides = (proposals[:, 2:] - proposals[:, :2]) * np.exp(targets[:, 2:])
    truth = np.concatenate([centres - sides / 2, centres + sides / 2], 1)
    classes = rng.integers(0, 2, num)  # class 2 has no example: its regressor is the identity
    features = targets @ mixing + 0.3  # unscaled; the fit scales them by `scale`
    regressors = fit_box_regressors(features, regression_targets(proposals, truth), classes, 3, ridge_lambda=1e-6, scale=0.5)
    out = np.asarray(apply_box_regressors(features.astype(np.float32), proposals.astype(np.float32),
                                          regressors.weights, regressors.biases))
    assert out.shape == (num, 3, 4)
    chosen = out[np.arange(num), classes]
    np.testing.assert_allclose(chosen, truth, atol=0.05, err_msg=f"seed={seed}")
    np.testing.assert_allclose(out[:, 2], proposals, atol=1e-3, err_msg=f"seed={seed}")
    assert regressors.num_examples.tolist() == [int((classes == 0).sum()), int((classes == 1).sum()), 0]

"""R-CNN's class-specific bounding-box regression (Girshick et al. 2014, appendix C), as the authors' code
trains it (bbox_regression/rcnn_train_bbox_regressor.m):

* examples: regions whose IoU with some ground-truth box exceeds 0.6 (`min_overlap`), each paired with the
  ground-truth box it overlaps most, whose class picks the regressor (the ground-truth boxes themselves
  are examples too, with target 0);
* targets (appendix C): t_x = (G_x - P_x) / P_w, t_y = (G_y - P_y) / P_h, t_w = log(G_w / P_w),
  t_h = log(G_h / P_h), with P, G box centres and sides (x2 - x1, no + 1: vision_jax's convention);
* features: pool5 in the paper (the CNN's pooled backbone features here), scaled to a mean L2 norm of 20
  as for the SVMs;
* per class, the targets are centred and decorrelated (mu, T = V diag(1 / sqrt(d + 0.001)) V' from the
  eigen-decomposition of their covariance, as the MATLAB code does; the paper does not mention it), then
  ridge regression with a bias feature, lambda = 1000, the bias regularised too:
  beta = (A'A + lambda I)^-1 A'Y with A = [features, 1];
* prediction: t = (A beta) T^-1 + mu, applied once to the region; everything is folded into one affine map
  per class, `deltas = x @ weights[c] + biases[c]` on unscaled features x.

A class without examples keeps the identity (weights and bias 0: boxes unchanged).
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.ops.boxes import decode_boxes

logger = logging.getLogger(__name__)

DECORRELATION_EPSILON = 0.001  # rcnn_train_bbox_regressor.m: 1 / sqrt(d + 0.001)


def regression_targets(proposals: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """float64 [N, 4] (t_x, t_y, t_w, t_h) moving proposals [N, 4] onto ground_truth [N, 4] (xyxy)."""
    p = np.asarray(proposals, np.float64)
    g = np.asarray(ground_truth, np.float64)
    p_w, p_h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    g_w, g_h = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    if np.any(p_w <= 0) or np.any(p_h <= 0) or np.any(g_w <= 0) or np.any(g_h <= 0):
        raise ValueError("regression_targets: a proposal or ground-truth box has no area (x2 <= x1 or y2 <= y1)")
    return np.stack([
        ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) / 2 / p_w,
        ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) / 2 / p_h,
        np.log(g_w / p_w),
        np.log(g_h / p_h),
    ], axis=1)  # fmt: skip


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 IoU [A, B] of xyxy boxes a [A, 4] and b [B, 4]; 0 where the union is empty."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)
    union = area(a)[:, None] + area(b)[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def regression_examples(regions: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                        min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's examples: (region rows int64 [E], targets float64 [E, 4], classes int64 [E]) for the
    regions [R, 4] whose best IoU with the ground truth [G, 4] exceeds min_overlap."""
    if len(gt_boxes) == 0 or len(regions) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64)
    iou = box_iou_numpy(regions, gt_boxes)
    best = iou.argmax(axis=1)
    rows = np.flatnonzero(iou[np.arange(len(regions)), best] > min_overlap)
    targets = regression_targets(regions[rows], gt_boxes[best[rows]])
    return rows.astype(np.int64), targets, np.asarray(gt_classes)[best[rows]].astype(np.int64)


@dataclasses.dataclass
class BoxRegressors:
    """deltas [..., C, 4] = features [..., D] @ weights [C, D, 4] + biases [C, 4] (unscaled features)."""

    weights: np.ndarray  # float32 [C, D, 4]
    biases: np.ndarray  # float32 [C, 4]
    num_examples: np.ndarray  # int64 [C]


def ridge_regression(a: np.ndarray, y: np.ndarray, ridge_lambda: float) -> np.ndarray:
    """argmin_x |A x - y|^2 + lambda |x|^2 = (A'A + lambda I)^-1 A'y, by Cholesky: float64 [D, K]."""
    a = np.asarray(a, np.float64)
    gram = a.T @ a + ridge_lambda * np.eye(a.shape[1])
    factor = np.linalg.cholesky(gram)
    return np.linalg.solve(factor.T, np.linalg.solve(factor, a.T @ np.asarray(y, np.float64)))


def fit_box_regressors(features: np.ndarray, targets: np.ndarray, classes: np.ndarray, num_classes: int, *,
                       ridge_lambda: float, scale: float) -> BoxRegressors:
    """Per-class ridge regressors (module docstring) on unscaled features [N, D], targets [N, 4] and
    classes [N] in 0..C-1; `scale` multiplies the features (the mean-norm-20 scale)."""
    features = np.asarray(features, np.float64)
    dim = features.shape[1]
    weights, biases = np.zeros((num_classes, dim, 4)), np.zeros((num_classes, 4))
    counts = np.bincount(np.asarray(classes, np.int64), minlength=num_classes)[:num_classes]
    for c in range(num_classes):
        rows = np.flatnonzero(classes == c)
        if len(rows) == 0:
            logger.warning("box regression: class %d has no example with IoU above the threshold; boxes unchanged", c)
            continue
        y = targets[rows]
        mu = y.mean(axis=0)
        covariance = (y - mu).T @ (y - mu) / len(rows)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        eigenvalues = np.maximum(eigenvalues, 0.0)  # round-off can make a zero eigenvalue slightly negative
        whiten = eigenvectors @ np.diag(1.0 / np.sqrt(eigenvalues + DECORRELATION_EPSILON)) @ eigenvectors.T
        unwhiten = eigenvectors @ np.diag(np.sqrt(eigenvalues + DECORRELATION_EPSILON)) @ eigenvectors.T
        a = np.concatenate([features[rows] * scale, np.ones((len(rows), 1))], axis=1)
        beta = ridge_regression(a, (y - mu) @ whiten, ridge_lambda)
        weights[c] = scale * beta[:-1] @ unwhiten
        biases[c] = beta[-1] @ unwhiten + mu
    return BoxRegressors(weights.astype(np.float32), biases.astype(np.float32), counts.astype(np.int64))


def apply_box_regressors(features: jax.Array, boxes: jax.Array, weights: jax.Array, biases: jax.Array) -> jax.Array:
    """JAX: features [..., D] and regions [..., 4] -> class-specific boxes [..., C, 4] (xyxy, not clipped)."""
    deltas = jnp.einsum("...d,cdk->...ck", features.astype(jnp.float32), weights) + biases
    return decode_boxes(deltas, boxes[..., None, :])

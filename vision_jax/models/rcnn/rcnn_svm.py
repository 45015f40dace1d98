"""R-CNN's per-class linear SVMs trained with hard negative mining (Girshick et al. 2014, section 2.3 and
appendix B), as the authors' MATLAB code does it (rcnn_train.m, liblinear):

* one binary SVM per class on the CNN's features (fc7 in the paper); positives = the class's ground-truth
  boxes only; negatives = regions whose IoU with every ground-truth box of the class is below 0.3
  (`negative_iou_threshold`); regions between are ignored;
* features scaled so that their mean L2 norm is 20 (`rcnn_scale_features`: x * 20 / mean norm, the mean
  measured on the training regions); the scale is folded into the returned weights;
* liblinear `-s 3 -c 0.001 -w1 2 -B 10`: L2-regularised hinge-loss SVM solved in the dual, C = 0.001,
  positives' cost 2 C, a bias feature of value 10 (regularised like every weight; b = 10 w_bias). This is
  exactly scikit-learn's `LinearSVC(loss="hinge", dual=True, C=0.001, class_weight={1: 2, -1: 1},
  intercept_scaling=10)`, which calls liblinear with those options;
* hard negative mining, one pass over the images in order (`hard_epochs = 1`): the first image adds all
  its negatives and trains; every later image adds its negatives that score above -1.0001
  (`hard_threshold`) and are not in the cache; the SVM is retrained when more than 2000
  (`retrain_limit`) negatives were added since the last training, and after the last image; after each
  training, cached negatives scoring below -1.2 (`evict_threshold`) are evicted.

With `hard_epochs > 1` the pass is repeated with the same cache and stops early after a pass that adds
nothing: every negative outside the cache then scores below -1 (zero hinge loss, zero dual variable), so
the SVM of the cache is the SVM of all negatives (the optimality conditions of the whole problem hold).
tests/detection/test_rcnn_svm.py checks this against a float64 NumPy solver run on all negatives.

One deliberate difference: liblinear's default stopping tolerance (0.1 on the projected gradient, which
R-CNN kept) is `tolerance`; the default here is liblinear's with scikit-learn's solver (1e-4 is sklearn's
default) so that a retrain does not depend on the order of the cache.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

TARGET_FEATURE_NORM = 20.0  # rcnn_scale_features.m


@dataclasses.dataclass(frozen=True)
class SVMSettings:
    """rcnn_train.m's values as defaults."""

    C: float = 1e-3
    positive_weight: float = 2.0  # liblinear -w1: positives' hinge losses cost positive_weight * C
    bias_multiplier: float = 10.0  # liblinear -B
    hard_threshold: float = -1.0001  # a negative scoring above this is hard
    evict_threshold: float = -1.2  # cached negatives scoring below this are evicted after a training
    retrain_limit: int = 2000  # retrain once more than this many negatives were added
    hard_epochs: int = 1  # passes over the images (R-CNN: 1)
    tolerance: float = 1e-4  # liblinear's stopping tolerance (module docstring)
    max_iterations: int = 10_000  # liblinear's coordinate-descent passes at most


@dataclasses.dataclass
class MinedSVM:
    """One class's SVM: score(x) = x . weights + bias for unscaled features x (the scale is folded in)."""

    weights: np.ndarray  # float32 [D]
    bias: float
    num_positives: int
    num_cached_negatives: int  # in the cache after the last training
    support_negatives: np.ndarray  # int64 [S, 2] (image index, row): cached negatives scoring >= -1 - 1e-6 at the end
    num_trainings: int
    objective: list[float]  # the primal objective after each training (rcnn_train.m's "obj val")


def feature_scale(features: np.ndarray) -> float:
    """R-CNN's scale: TARGET_FEATURE_NORM / the mean L2 norm of the feature rows [N, D]."""
    norms = np.linalg.norm(np.asarray(features, np.float64), axis=1)
    mean = float(norms.mean()) if len(norms) else 0.0
    if not mean > 0:
        raise ValueError("feature_scale: the features are all zero (a dead CNN layer?); nothing to train the SVMs on")
    return TARGET_FEATURE_NORM / mean


def train_linear_svm(positives: np.ndarray, negatives: np.ndarray, settings: SVMSettings) -> tuple[np.ndarray, float]:
    """liblinear -s 3 with R-CNN's options on positives [n, D] and negatives [m, D] (scaled features).
    Returns (w float64 [D], b): score = x . w + b."""
    from sklearn.svm import LinearSVC  # local: only the SVM stage needs scikit-learn

    x = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), -np.ones(len(negatives))])
    svm = LinearSVC(loss="hinge", dual=True, C=settings.C, class_weight={1: settings.positive_weight, -1: 1.0},
                    intercept_scaling=settings.bias_multiplier, tol=settings.tolerance,
                    max_iter=settings.max_iterations, random_state=0)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svm.fit(x, y)
    for warning in caught:
        logger.warning("LinearSVC on %d positives, %d negatives: %s", len(positives), len(negatives), warning.message)
    return svm.coef_[0].astype(np.float64), float(svm.intercept_[0])


def svm_objective(w, b, positives, negatives, settings: SVMSettings) -> float:
    """liblinear's primal: 0.5 |w|^2 + 0.5 (b / B)^2 + C (w1 sum of positive hinges + sum of negative hinges)."""
    positive_scores = positives @ w + b
    negative_scores = negatives @ w + b
    return float(0.5 * w @ w + 0.5 * (b / settings.bias_multiplier) ** 2
                 + settings.C * settings.positive_weight * np.maximum(0, 1 - positive_scores).sum()
                 + settings.C * np.maximum(0, 1 + negative_scores).sum())  # fmt: skip


def mine_svm(positives: np.ndarray, negatives_per_image: Sequence[np.ndarray], settings: SVMSettings,
             scale: float = 1.0) -> MinedSVM:
    """One class's SVM by hard negative mining (module docstring).

    Args:
      positives: [n, D] features of the class's ground-truth boxes (unscaled).
      negatives_per_image: one [m_i, D] array per image (m_i may be 0): that image's regions whose IoU with
        every ground-truth box of the class is below the negative threshold (unscaled). A negative's key
        is (image index, row).
      scale: the feature scale (`feature_scale`); features are multiplied by it before training.
    Returns:
      MinedSVM with weights and bias for unscaled features.
    """
    dim = positives.shape[1] if len(positives) else (negatives_per_image[0].shape[1] if negatives_per_image else 0)
    positives = np.asarray(positives, np.float64).reshape(-1, dim) * scale
    w, b = np.zeros(dim), 0.0
    cache_x = np.zeros((0, dim))
    cache_keys = np.zeros((0, 2), np.int64)
    pending_x, pending_keys = [], []  # added since the last training (joined to the cache when it trains)
    in_cache: set[tuple[int, int]] = set()
    num_added, trainings, objective = 0, 0, []
    last_image = len(negatives_per_image) - 1
    for epoch in range(settings.hard_epochs):
        added_this_epoch = 0
        for index, negatives in enumerate(negatives_per_image):
            first_time = epoch == 0 and index == 0
            negatives = np.asarray(negatives, np.float64).reshape(-1, dim) * scale
            if first_time:
                rows = np.arange(len(negatives))
            else:
                rows = np.flatnonzero(negatives @ w + b > settings.hard_threshold)
                rows = np.asarray([r for r in rows if (index, int(r)) not in in_cache], np.int64)
            if len(rows):
                pending_x.append(negatives[rows])
                pending_keys.append(np.stack([np.full(len(rows), index), rows], axis=1))
                in_cache.update((index, int(r)) for r in rows)
                num_added += len(rows)
                added_this_epoch += len(rows)
            # R-CNN retrains after the first image, past the retrain limit and after the last image; a
            # later pass (hard_epochs > 1) ends with a training only if it added something.
            end_of_pass = index == last_image and (num_added > 0 or epoch == settings.hard_epochs - 1)
            if (first_time or num_added > settings.retrain_limit or end_of_pass) and (len(cache_x) or pending_x) \
                    and len(positives):
                cache_x = np.concatenate([cache_x, *pending_x])
                cache_keys = np.concatenate([cache_keys, *pending_keys])
                pending_x, pending_keys = [], []
                w, b = train_linear_svm(positives, cache_x, settings)
                trainings += 1
                num_added = 0
                objective.append(svm_objective(w, b, positives, cache_x, settings))
                easy = cache_x @ w + b < settings.evict_threshold
                in_cache.difference_update(map(tuple, cache_keys[easy].tolist()))
                cache_x, cache_keys = cache_x[~easy], cache_keys[~easy]
        if epoch > 0 and added_this_epoch == 0:
            break  # converged: no negative outside the cache scores above hard_threshold
    if not len(positives):
        logger.warning("SVM with no positive example: every score is -%g", settings.bias_multiplier)
        return MinedSVM(np.zeros(dim, np.float32), -float(settings.bias_multiplier), 0, len(cache_x),
                        np.zeros((0, 2), np.int64), 0, [])  # fmt: skip
    support = cache_keys[cache_x @ w + b >= -1.0 - 1e-6] if len(cache_x) else np.zeros((0, 2), np.int64)
    return MinedSVM((w * scale).astype(np.float32), float(b), len(positives), len(cache_x), support, trainings, objective)

"""R-CNN's SVMs (vision_jax/models/rcnn/rcnn_svm.py): the hard-negative-mining loop against a brute-force
float64 solver that sees every negative at once (an independent one: SciPy's L-BFGS-B on the dual QP), and liblinear's options against the primal objective they define."""

import numpy as np
import pytest

from vision_jax.models.rcnn.rcnn_svm import SVMSettings, feature_scale, mine_svm, svm_objective, train_linear_svm


def brute_force_svm(positives, negatives, C, positive_weight, bias_multiplier):
    """min 0.5 |w~|^2 + sum_i C_i max(0, 1 - y_i w~ . x~_i) with x~ = (x, B), through its dual, a box-
    constrained QP (min 0.5 a'Qa - sum a, 0 <= a_i <= C_i), solved by SciPy's L-BFGS-B in float64."""
    from scipy.optimize import minimize

    x = np.concatenate([positives, negatives]).astype(np.float64)
    x = np.concatenate([x, np.full((len(x), 1), bias_multiplier)], axis=1)
    y = np.concatenate([np.ones(len(positives)), -np.ones(len(negatives))])
    upper = np.where(y > 0, C * positive_weight, C)
    yx = y[:, None] * x
    q = yx @ yx.T
    dual = lambda a: (0.5 * a @ q @ a - a.sum(), q @ a - 1.0)
    result = minimize(dual, np.zeros(len(x)), jac=True, method="L-BFGS-B", bounds=[(0, u) for u in upper],
                      options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 100_000, "maxfun": 100_000})
    w = yx.T @ result.x
    return w[:-1], w[-1] * bias_multiplier


def scenes(rng, num_images, dim):
    """Positives around +m, negatives per image around -m with a few hard ones near the positives."""
    direction = rng.normal(0, 1, dim)
    direction /= np.linalg.norm(direction)
    positives = rng.normal(0, 1, (25, dim)) + 2.0 * direction
    negatives = []
    for _ in range(num_images):
        count = int(rng.integers(0, 40))
        hard = rng.random(count) < 0.15
        negatives.append(rng.normal(0, 1, (count, dim)) + np.where(hard, 0.8, -2.5)[:, None] * direction)
    return positives, negatives


def test_mining_until_no_hard_negative_is_left_equals_the_svm_of_all_negatives(rng, seed):
    positives, negatives = scenes(rng, num_images=12, dim=6)
    # A small retrain limit and C large enough that most negatives are easy and get evicted: the loop's
    # cache must differ from the full set for the test to mean anything.
    settings = SVMSettings(C=0.5, retrain_limit=30, hard_epochs=20, tolerance=1e-8, max_iterations=1_000_000)
    scale = feature_scale(np.concatenate([positives, *negatives]))
    mined = mine_svm(positives, negatives, settings, scale=scale)
    all_negatives = np.concatenate(negatives)
    w, b = brute_force_svm(positives * scale, all_negatives * scale, settings.C, settings.positive_weight,
                           settings.bias_multiplier)
    assert mined.num_cached_negatives < len(all_negatives), f"seed={seed}: nothing was evicted; the case is trivial"
    np.testing.assert_allclose(mined.weights, w * scale, rtol=1e-4, atol=1e-5, err_msg=f"seed={seed}")
    assert mined.bias == pytest.approx(b, rel=1e-4, abs=1e-5), f"seed={seed}"
    # The support negatives (score >= -1 under the optimum) are the same set; free support vectors lie on
    # the margin (score -1) up to the solvers' tolerances, hence the band.
    offsets = np.cumsum([0] + [len(n) for n in negatives])
    scores = all_negatives @ (w * scale) + b
    keys = [(i, r) for i in range(len(negatives)) for r in range(len(negatives[i]))]
    surely = {key for key, z in zip(keys, scores) if z > -1.0 + 1e-3}
    maybe = {key for key, z in zip(keys, scores) if z > -1.0 - 1e-3}
    found = {tuple(key) for key in mined.support_negatives.tolist()}
    assert surely <= found <= maybe, f"seed={seed}"


def test_one_pass_as_rcnn_train_m_retrains_after_first_image_limit_and_last_image(rng, seed):
    positives, negatives = scenes(rng, num_images=10, dim=5)
    negatives[0] = np.concatenate([negatives[0], rng.normal(-2.5, 1, (5, 5))])  # the first image has negatives
    settings = SVMSettings(C=0.5, retrain_limit=25, tolerance=1e-8, max_iterations=100_000)
    mined = mine_svm(positives, negatives, settings)
    # Replay the schedule: a training after image 0, whenever > 25 hard negatives were added, and at the end.
    expected_trainings, added, w, b = 0, 0, None, None
    cache, in_cache = [], set()
    for index, image in enumerate(negatives):
        rows = range(len(image)) if index == 0 else [r for r in range(len(image))
                                                     if image[r] @ w + b > -1.0001 and (index, r) not in in_cache]
        cache += [(index, r) for r in rows]
        in_cache.update((index, r) for r in rows)
        added += len(rows)
        if index == 0 or added > 25 or index == len(negatives) - 1:
            x = np.stack([negatives[i][r] for i, r in cache])
            w, b = train_linear_svm(positives, x, settings)
            expected_trainings, added = expected_trainings + 1, 0
            keep = x @ w + b >= -1.2
            cache = [key for key, k in zip(cache, keep) if k]
            in_cache = set(cache)
    assert mined.num_trainings == expected_trainings, f"seed={seed}"
    assert mined.num_cached_negatives == len(cache), f"seed={seed}"
    np.testing.assert_allclose(mined.weights, w, rtol=1e-6, atol=1e-8, err_msg=f"seed={seed}")


def test_liblinear_options_minimise_rcnn_objective_with_regularised_bias(rng, seed):
    """LinearSVC(loss='hinge', C, class_weight {1: w1}, intercept_scaling B) is liblinear -s 3 -c C -w1 w1 -B B:
    its solution has the brute-force solver's objective, which no perturbation lowers."""
    positives, negatives = scenes(rng, num_images=3, dim=4)
    negatives = np.concatenate(negatives)
    settings = SVMSettings(C=0.2, tolerance=1e-10, max_iterations=200_000)
    w, b = train_linear_svm(positives, negatives, settings)
    w_ref, b_ref = brute_force_svm(positives, negatives, settings.C, settings.positive_weight, settings.bias_multiplier)
    np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7, err_msg=f"seed={seed}")
    best = svm_objective(w, b, positives, negatives, settings)
    for _ in range(20):
        step = rng.normal(0, 1e-3, 5)
        assert svm_objective(w + step[:4], b + step[4], positives, negatives, settings) >= best - 1e-9, f"seed={seed}"


def test_feature_scale_gives_mean_norm_20_and_refuses_dead_features(rng):
    features = rng.normal(0, 3, (50, 8))
    assert np.linalg.norm(features * feature_scale(features), axis=1).mean() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="features are all zero"):
        feature_scale(np.zeros((4, 3)))

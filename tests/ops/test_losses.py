"""vision_jax.ops.losses against float64 NumPy versions of the torchvision/detectron2 formulas."""
from __future__ import annotations

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vision_jax.ops import losses

TOL = 1e-5


def assert_close(got, ref, seed, what):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape} (seed={seed})"
    err = np.abs(got - ref)
    # 1e-5 absolute for values up to 1, relative above (float32 carries ~7 digits).
    assert np.all(err <= TOL * np.maximum(1.0, np.abs(ref))), f"{what}: max err {err.max():.3g} (seed={seed})"
    return float(err.max()) if err.size else 0.0


def reduce(values, reduction):
    return {"none": values, "sum": values.sum(), "mean": values.mean()}[reduction]


# ----------------------------------------------------------------------------- references
def ref_smooth_l1(pred, target, beta):
    diff = np.abs(pred.astype(np.float64) - target)
    if beta < 1e-5:
        return diff
    return np.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta)


def ref_focal(logits, targets, alpha, gamma):
    x, t = logits.astype(np.float64), targets.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    ce = np.logaddexp(0, x) - x * t  # -[t log p + (1 - t) log(1 - p)], stable for any x
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def ref_cross_entropy(logits, labels, ignore_index, weights):
    x = logits.astype(np.float64)
    log_probs = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    per_element = np.zeros(labels.shape)
    total = 0.0
    for index in np.ndindex(labels.shape):
        label = labels[index]
        if label == ignore_index or not 0 <= label < x.shape[-1]:
            continue
        weight = 1.0 if weights is None else weights[label]
        per_element[index] = -weight * log_probs[index + (label,)]
        total += weight
    return per_element, (per_element.sum() / total if total > 0 else 0.0)


def ref_giou_loss(pred, target, eps=1e-7):
    """torchvision generalized_box_iou_loss with widths floored at 0 (documented deviation)."""
    p, t = pred.astype(np.float64), target.astype(np.float64)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    iw = np.clip(np.minimum(p[..., 2], t[..., 2]) - np.maximum(p[..., 0], t[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 3], t[..., 3]) - np.maximum(p[..., 1], t[..., 1]), 0, None)
    inter = iw * ih
    union = area(p) + area(t) - inter
    cw = np.clip(np.maximum(p[..., 2], t[..., 2]) - np.minimum(p[..., 0], t[..., 0]), 0, None)
    ch = np.clip(np.maximum(p[..., 3], t[..., 3]) - np.minimum(p[..., 1], t[..., 1]), 0, None)
    enclosing = cw * ch
    return 1 - (inter / (union + eps) - (enclosing - union) / (enclosing + eps))


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_smooth_l1_matches_detectron2_formula(reduction, rng, seed):
    fn = jax.jit(losses.smooth_l1_loss, static_argnums=(2, 3))
    for beta in (0.0, 1e-6, 1.0 / 9, 1.0, float(rng.uniform(0.01, 3))):
        pred = rng.normal(0, 2, (150, 4)).astype(np.float32)
        target = (pred + rng.normal(0, 1, (150, 4)) * rng.choice([0, 0.05, 1], (150, 4))).astype(np.float32)
        assert_close(fn(pred, target, beta, reduction), reduce(ref_smooth_l1(pred, target, beta), reduction),
                     seed, f"beta={beta}")


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.25, 0.0), (0.6, 0.5), (0.25, 1.5)])
def test_sigmoid_focal_loss_matches_torchvision_formula(alpha, gamma, rng, seed):
    fn = jax.jit(losses.sigmoid_focal_loss, static_argnums=(2, 3, 4))
    logits = (rng.normal(0, 4, (200, 5)) * rng.choice([1, 5], (200, 5))).astype(np.float32)
    targets = (rng.uniform(size=(200, 5)) < 0.3).astype(np.float32)
    targets[:20] = rng.uniform(size=(20, 5))  # soft targets
    ref = ref_focal(logits, targets, alpha, gamma)
    assert_close(fn(logits, targets, alpha, gamma, "none"), ref, seed, "none")
    assert_close(fn(logits, targets, alpha, gamma, "sum"), ref.sum(), seed, "sum")
    assert_close(fn(logits, targets, alpha, gamma, "mean"), ref.mean(), seed, "mean")


@pytest.mark.parametrize("with_weights", [False, True])
def test_softmax_cross_entropy_matches_torch_semantics(with_weights, rng, seed):
    per_element_fn = jax.jit(losses.softmax_cross_entropy_per_element, static_argnums=2)
    mean_fn = jax.jit(losses.softmax_cross_entropy, static_argnums=2)
    for case in range(110):
        num_classes = 6
        logits = rng.normal(0, 3, (4, 5, num_classes)).astype(np.float32)
        labels = rng.integers(0, num_classes, (4, 5)).astype(np.int32)
        labels[rng.uniform(size=(4, 5)) < 0.3] = 255
        if case % 10 == 0:
            labels[:] = 255  # all ignored -> 0 by definition (torch would give NaN)
        weights = rng.uniform(0.1, 3, num_classes).astype(np.float32) if with_weights else None
        ref_per_element, ref_mean = ref_cross_entropy(logits, labels, 255, weights)
        assert_close(per_element_fn(logits, labels, 255, weights), ref_per_element, seed, f"case {case}")
        assert_close(mean_fn(logits, labels, 255, weights), ref_mean, seed, f"case {case} mean")


def test_giou_loss_matches_torchvision_formula(rng, seed):
    fn = jax.jit(losses.giou_loss, static_argnums=2)
    centre = rng.uniform(0, 300, (300, 2))
    size = rng.uniform(0, 80, (300, 2))
    target = np.concatenate([centre - size / 2, centre + size / 2], 1)
    pred = target + rng.normal(0, 20, (300, 4))
    pred[:30, 2:] = pred[:30, :2]  # zero-area predictions
    pred[30:60] = pred[30:60][:, [2, 3, 0, 1]]  # inverted predictions
    pred, target = pred.astype(np.float32), target.astype(np.float32)
    ref = ref_giou_loss(pred, target)
    assert_close(fn(pred, target, "none"), ref, seed, "none")
    assert_close(fn(pred, target, "mean"), ref.mean(), seed, "mean")
    assert np.all((ref >= 0) & (ref <= 2 + 1e-6))


def test_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="reduction"):
        losses.smooth_l1_loss(jnp.zeros(3), jnp.zeros(3), 1.0, "avg")
    with pytest.raises(ValueError, match="weights must be"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), weights=jnp.ones(4))
    with pytest.raises(ValueError, match="disagree"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="beta"):
        losses.smooth_l1_loss(jnp.zeros(3), jnp.zeros(3), -1.0)


# ----------------------------------------------------------------------------- gradients
def test_gradients_match_analytic_and_finite_difference_references(rng, seed):
    # Cross-entropy: d mean / d logits = w_y (softmax - onehot) / sum w over non-ignored.
    logits = rng.normal(0, 2, (10, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 10).astype(np.int32)
    labels[:3] = 255
    weights = rng.uniform(0.5, 2, 4).astype(np.float32)
    grad = jax.jit(jax.grad(losses.softmax_cross_entropy), static_argnums=2)(logits, labels, 255, weights)
    x = logits.astype(np.float64)
    softmax = np.exp(x - x.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    used = labels != 255
    onehot = np.eye(4)[np.where(used, labels, 0)]
    element_weight = np.where(used, weights[np.where(used, labels, 0)], 0)
    ref = element_weight[:, None] * (softmax - onehot) / element_weight.sum()
    assert_close(grad, ref, seed, "cross-entropy grad")
    # Focal and GIoU losses: float64 central differences of the NumPy references.
    logits = rng.normal(0, 2, (6,)).astype(np.float32)
    targets = (rng.uniform(size=6) < 0.5).astype(np.float32)
    grad = jax.jit(jax.grad(lambda x, t: losses.sigmoid_focal_loss(x, t, reduction="sum")))(logits, targets)
    numeric = [(ref_focal(logits + d, targets, 0.25, 2).sum() - ref_focal(logits - d, targets, 0.25, 2).sum())
               / 2e-4 for d in np.eye(6) * 1e-4]
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5, err_msg=f"focal seed={seed}")
    target = np.asarray([[10.0, 10.0, 50.0, 40.0]])
    pred = (target + rng.normal(0, 5, (1, 4))).astype(np.float32)
    grad = jax.jit(jax.grad(lambda p, t: losses.giou_loss(p, t, "sum")))(pred, target.astype(np.float32))
    numeric = np.asarray([(ref_giou_loss(pred + d, target).sum() - ref_giou_loss(pred - d, target).sum()) / 2e-4
                          for d in np.eye(4)[:, None, :] * 1e-4])[None, :]
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5, err_msg=f"giou seed={seed}")


box_coordinates = st.floats(-300, 300, width=32)


@functools.partial(jax.jit, static_argnums=2)
def loss_values_and_gradients(pred_boxes, target_boxes, gamma):
    giou_value, giou_grad = jax.value_and_grad(lambda p: losses.giou_loss(p, target_boxes, "sum"))(pred_boxes)
    logits = pred_boxes.reshape(-1) / 10.0
    targets = (target_boxes.reshape(-1) > 0).astype(jnp.float32)
    focal_value, focal_grad = jax.value_and_grad(
        lambda x: losses.sigmoid_focal_loss(x * 100.0, targets, gamma=gamma, reduction="sum"))(logits)
    smooth_value, smooth_grad = jax.value_and_grad(
        lambda p: losses.smooth_l1_loss(p, target_boxes, 1.0 / 9, "sum"))(pred_boxes)
    return giou_value, giou_grad, focal_value, focal_grad, smooth_value, smooth_grad


@settings(max_examples=40, deadline=None)
@given(pred=hnp.arrays(np.float32, (4, 4), elements=box_coordinates),
       target=hnp.arrays(np.float32, (4, 4), elements=box_coordinates),
       gamma=st.sampled_from([0.5, 2.0]))
def test_losses_and_gradients_stay_finite_on_degenerate_boxes_and_saturated_logits(pred, target, gamma):
    """Zero-area/inverted/coincident boxes and logits up to +-3000 (sigmoid saturates to 0/1)."""
    for value in loss_values_and_gradients(pred, target, gamma):
        assert np.all(np.isfinite(np.asarray(value)))
    giou_value = float(loss_values_and_gradients(pred, target, gamma)[0])
    assert abs(giou_value - ref_giou_loss(pred, target).sum()) <= 1e-4 * max(1.0, abs(giou_value))


# ----------------------------------------------------------------------------- jit and vmap
OPS = {
    "smooth_l1_loss": lambda a, b: losses.smooth_l1_loss(a, b, 0.5),
    "sigmoid_focal_loss": lambda a, b: losses.sigmoid_focal_loss(a, (b > 0).astype(jnp.float32)),
    "softmax_cross_entropy": lambda a, b: losses.softmax_cross_entropy(
        a, jnp.where(b[:, 0] > 0.5, 255, jnp.argmax(b, -1))),
    "giou_loss": lambda a, b: losses.giou_loss(jnp.sort(a, -1), jnp.sort(b, -1)),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_losses_trace_once_and_vmap_equals_loop(name, rng, seed):
    op, traces = OPS[name], []

    def counted(a, b):
        traces.append(1)
        return op(a, b)

    jitted, single = jax.jit(counted), jax.jit(op)
    for _ in range(2):
        a, b = rng.normal(0, 3, (8, 4)).astype(np.float32), rng.normal(0, 3, (8, 4)).astype(np.float32)
        np.testing.assert_allclose(jitted(a, b), single(a, b), rtol=1e-6, err_msg=f"seed={seed}")
    assert len(traces) == 1, f"{name} traced {len(traces)} times"
    batch_a, batch_b = (rng.normal(0, 3, (3, 8, 4)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(jax.jit(jax.vmap(op))(batch_a, batch_b),
                               np.stack([single(a, b) for a, b in zip(batch_a, batch_b)]), rtol=1e-6,
                               atol=1e-7, err_msg=f"{name} seed={seed}")

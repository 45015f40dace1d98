"""Learning-rate schedules and weight decay against the formulas they implement."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.train.config import base_config
from vision_jax.train.optimizers import build_optimizer, build_schedule


def reference_lr(step, peak, warmup, num_steps, schedule, min_lr=0.0, boundaries=(), factor=0.1):
    """The schedule written out in float64: linear warmup, then cosine / step / constant."""
    if step < warmup:
        return peak * step / warmup
    t = step - warmup
    if schedule == "cosine":
        total = num_steps - warmup
        progress = min(t, total) / total
        return min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return peak * factor ** sum(step >= int(b * num_steps) for b in boundaries)
    return peak


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
@pytest.mark.parametrize("warmup", [0, 17])
def test_schedule_matches_formula(schedule, warmup):
    c = base_config("classification").optimizer
    c.schedule, c.warmup_steps, c.learning_rate, c.min_learning_rate = schedule, warmup, 0.4, 0.004
    num_steps = 200
    fn = build_schedule(c, num_steps)
    for step in range(0, num_steps + 1):
        want = reference_lr(step, 0.4, warmup, num_steps, schedule, 0.004, tuple(c.decay_boundaries), c.decay_factor)
        assert float(fn(step)) == pytest.approx(want, rel=1e-5, abs=1e-7), (schedule, warmup, step)


def test_bad_schedule_and_warmup_are_refused():
    c = base_config("classification").optimizer
    c.schedule = "cosin"
    with pytest.raises(ValueError, match="optimizer.schedule"):
        build_schedule(c, 100)
    c.schedule, c.warmup_steps = "cosine", 101
    with pytest.raises(ValueError, match="warmup_steps"):
        build_schedule(c, 100)


def _params(rng):
    return {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32), "bias": jnp.asarray(rng.normal(size=4), jnp.float32)},
        "bn": {"scale": jnp.asarray(rng.normal(size=4), jnp.float32)},
    }


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_skips_biases_and_norm_scales(name):
    """With zero gradients only decay moves parameters: kernels shrink, biases and scales stay."""
    seed = np.random.SeedSequence().entropy
    rng = np.random.default_rng(seed)
    c = base_config("classification").optimizer
    c.name, c.schedule, c.learning_rate, c.weight_decay, c.momentum = name, "constant", 0.1, 0.01, 0.0
    tx, _ = build_optimizer(c, 10)
    params = _params(rng)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    np.testing.assert_allclose(new["conv"]["bias"], params["conv"]["bias"], err_msg=f"seed={seed}")
    np.testing.assert_allclose(new["bn"]["scale"], params["bn"]["scale"], err_msg=f"seed={seed}")
    # SGD: p - lr * wd * p; AdamW (decoupled, zero moments): p - lr * wd * p as well.
    np.testing.assert_allclose(
        new["conv"]["kernel"], params["conv"]["kernel"] * (1 - 0.1 * 0.01), rtol=1e-6, err_msg=f"seed={seed}"
    )


def test_sgd_momentum_and_clipping_match_reference():
    """Three SGD steps with momentum and global-norm clipping against a NumPy loop."""
    seed = np.random.SeedSequence().entropy
    rng = np.random.default_rng(seed)
    c = base_config("classification").optimizer
    c.name, c.schedule, c.learning_rate, c.weight_decay, c.momentum, c.grad_clip_norm = "sgd", "constant", 0.05, 0.0, 0.9, 1.0
    tx, _ = build_optimizer(c, 10)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
    state = tx.init(params)
    p_ref, velocity = np.asarray(params["w"], np.float64), np.zeros((5, 3))
    for _ in range(3):
        grad = rng.normal(size=(5, 3)) * 3
        updates, state = tx.update({"w": jnp.asarray(grad, jnp.float32)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        clipped = grad * min(1.0, 1.0 / np.linalg.norm(grad))
        velocity = 0.9 * velocity + clipped
        p_ref = p_ref - 0.05 * velocity
    np.testing.assert_allclose(params["w"], p_ref, rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}")

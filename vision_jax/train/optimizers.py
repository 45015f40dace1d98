"""Optimizer and learning-rate schedule from `config.optimizer` (optax).

Keys (all in `config.optimizer`):
  name: 'sgd' (momentum, optional Nesterov) or 'adamw'.
  learning_rate: peak learning rate, reached at the end of warmup.
  schedule: 'cosine' (to `min_learning_rate` at `train.num_steps`), 'step' (multiply by
    `decay_factor` at each fraction of `train.num_steps` in `decay_boundaries`) or 'constant'.
  warmup_steps: linear warmup from 0 to `learning_rate`.
  weight_decay: L2 (SGD, added to the gradient as torchvision does) or decoupled (AdamW);
    applied only to kernels, never to biases or norm scales/offsets (arrays of ndim < 2).
  grad_clip_norm: clip the global gradient norm to this value when > 0.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def build_schedule(opt_config: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """Linear warmup, then cosine, step or constant decay, as a function of the step."""
    peak = float(opt_config.learning_rate)
    warmup = int(opt_config.warmup_steps)
    if warmup < 0 or warmup > num_steps:
        raise ValueError(f"optimizer.warmup_steps={warmup} must be in [0, train.num_steps={num_steps}]")
    decay_steps = max(num_steps - warmup, 1)
    if opt_config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(
            peak, decay_steps, alpha=float(opt_config.min_learning_rate) / peak if peak else 0.0
        )
    elif opt_config.schedule == "step":
        boundaries = {
            int(fraction * num_steps) - warmup: float(opt_config.decay_factor)
            for fraction in opt_config.decay_boundaries
        }
        decay = optax.piecewise_constant_schedule(peak, boundaries)
    elif opt_config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f"optimizer.schedule={opt_config.schedule!r} is not one of {SCHEDULES}")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params) -> dict:
    """True for arrays that get weight decay: conv and dense kernels, not biases or norms."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def build_optimizer(
    opt_config: ml_collections.ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns the optax transformation and its learning-rate schedule."""
    schedule = build_schedule(opt_config, num_steps)
    chain = []
    if opt_config.grad_clip_norm > 0:
        chain.append(optax.clip_by_global_norm(float(opt_config.grad_clip_norm)))
    if opt_config.name == "sgd":
        if opt_config.weight_decay > 0:
            chain.append(optax.add_decayed_weights(float(opt_config.weight_decay), mask=decay_mask))
        chain.append(
            optax.sgd(schedule, momentum=float(opt_config.momentum) or None, nesterov=bool(opt_config.nesterov))
        )
    elif opt_config.name == "adamw":
        chain.append(
            optax.adamw(
                schedule,
                b1=float(opt_config.b1),
                b2=float(opt_config.b2),
                eps=float(opt_config.eps),
                weight_decay=float(opt_config.weight_decay),
                mask=decay_mask,
            )
        )
    else:
        raise ValueError(f"optimizer.name={opt_config.name!r} is not one of {OPTIMIZERS}")
    return optax.chain(*chain), schedule

"""The per-device train and predict steps, wrapped for data parallelism.

Nothing here knows about labels, boxes or masks: the task's `loss` and `predict` do.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from vision_jax.train import parallel
from vision_jax.train.freezing import keep_frozen_stats
from vision_jax.train.state import TrainState


def make_train_step(
    task, model, tx: optax.GradientTransformation, mesh: Mesh, schedule: Callable, frozen_stats=None
) -> Callable:
    """Returns `step(state, batch) -> (state, metrics)`, jitted and data parallel.

    frozen_stats: None, or a tree like the model state, True where a statistic keeps its value
    (vision_jax.train.freezing).

    The loss, gradients, metrics and BatchNorm statistics are averaged over devices (each
    device holds the same number of examples, so this is the global mean). A non-finite
    loss leaves the state unchanged and reports `finite = 0`, so the loop can stop the run
    without a poisoned state ever reaching a checkpoint.
    """

    def per_device(state: TrainState, batch: dict):
        rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(parallel.AXIS))

        def loss_fn(params):
            variables = {"params": params, **state.model_state}
            return task.loss(model, variables, batch, rng, True)

        (loss, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = lax.pmean(grads, parallel.AXIS)
        loss = lax.pmean(loss, parallel.AXIS)
        metrics = lax.pmean(dict(metrics), parallel.AXIS)
        new_model_state = lax.pmean(dict(new_model_state), parallel.AXIS)
        new_model_state = keep_frozen_stats(frozen_stats, new_model_state, state.model_state)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        keep_old = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = state.replace(
            step=state.step + 1,
            params=keep_old(new_params, state.params),
            model_state=keep_old(new_model_state, state.model_state),
            opt_state=keep_old(new_opt_state, state.opt_state),
        )
        metrics = {
            **metrics,
            "loss": loss,
            "learning_rate": schedule(state.step),
            "grad_norm": optax.tree.norm(grads),
            "finite": finite.astype(jnp.float32),
        }
        return new_state, metrics

    return parallel.data_parallel(
        per_device, mesh, in_specs=(P(), P(parallel.AXIS)), out_specs=(P(), P()), donate_argnums=(0,)
    )


def make_predict_step(task, model, mesh: Mesh) -> Callable:
    """Returns `predict(variables, batch) -> predictions`, batch-sharded like the input."""

    def per_device(variables, batch):
        return task.predict(model, variables, batch)

    return parallel.data_parallel(per_device, mesh, in_specs=(P(), P(parallel.AXIS)), out_specs=P(parallel.AXIS))

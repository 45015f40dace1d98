"""The train state: everything a resumed run needs to continue bit for bit."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """step: int32 scalar; params and model_state (e.g. {'batch_stats': ...}) are Flax
    variable collections; opt_state is optax's; rng is a raw uint32 [2] key (raw so that
    orbax stores it as a plain array)."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array

    @property
    def variables(self) -> dict:
        return {"params": self.params, **self.model_state}


def create_train_state(
    model, init_inputs: dict, tx: optax.GradientTransformation, seed: int
) -> TrainState:
    """Initialises the model from `seed` (identical on every process).

    Initialisers draw from an 'rbg' key: XLA compiles the init of a ResNet in a quarter of
    the time it takes with the default (partitionable) threefry on CPU (10 s against 40 s
    measured on the 2-core machine). The state's own key, used in the train step, stays threefry.
    """
    init_rng = jax.random.key(seed, impl="rbg")
    state_rng = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    variables = jax.jit(lambda r: model.init(r, **init_inputs, train=False))(init_rng)
    params = variables.pop("params") if isinstance(variables, dict) else variables["params"]
    model_state = {k: v for k, v in dict(variables).items() if k != "params"}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=tx.init(params),
        rng=state_rng,
    )

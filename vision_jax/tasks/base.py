"""What a task supplies to the one train loop.

The loop (`vision_jax.train.loop`) knows nothing about labels, boxes or masks. A task
bundles what differs between classification, localization, detection and segmentation:

A task is constructed from the run's config (`TASKS[config.task](config)`), then:

* `build_model(info)`: the Flax module, its head sized from the dataset info.
* `preprocess(info, train)`: a TensorFlow function applied inside tf.data to one
  canonical example (see `vision_jax.data.datasets`) that returns a dict of fixed-shape
  tensors; it receives a stateless seed `[2] int64` so augmentation is deterministic.
* `init_inputs(info)`: dummy per-device inputs used by `model.init`.
* `loss(model, variables, batch, rng, train)`: runs the model and returns
  `(scalar loss, (metrics dict of scalars, new mutable collections))`. Runs per device
  inside `shard_map`; the loop averages the loss, gradients and metrics over devices.
* `predict(model, variables, batch)`: jittable post-processing to a dict of arrays
  (class probabilities, decoded boxes, detections...), with the batch's leading axis.
* `make_evaluator(info)`: a host-side accumulator of predictions (NumPy).
* `draw(batch, predictions, info)`: the batch's images with predictions drawn on them,
  a list of uint8 [H, W, 3] pictures (for `workdir/pictures` and `scripts/predict.py`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

import flax.linen as nn
import jax
import ml_collections
import numpy as np

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


class Evaluator(Protocol):
    """Accumulates predictions over an eval split on the host.

    `update` receives NumPy arrays for one global batch; padded examples (added to fill the
    last batch) have `batch["example_valid"] == False` and must be skipped.
    """

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None: ...

    def result(self) -> dict[str, float]: ...

    # Optional: `artifacts() -> {file name: JSON-serialisable}`, written by the loop into
    # `workdir/eval/` after each evaluation (e.g. detections as a COCO results file).


class Task(Protocol):
    name: str

    def __init__(self, config: ml_collections.ConfigDict): ...

    def build_model(self, info: Any) -> nn.Module: ...

    def preprocess(self, info: Any, train: bool) -> Callable[[dict, Any], dict]: ...

    def init_inputs(self, info: Any) -> dict[str, np.ndarray]: ...

    def loss(
        self, model: nn.Module, variables: dict, batch: Batch, rng: jax.Array, train: bool
    ) -> tuple[jax.Array, tuple[Metrics, dict]]: ...

    def predict(self, model: nn.Module, variables: dict, batch: Batch) -> dict[str, jax.Array]: ...

    def make_evaluator(self, info: Any) -> Evaluator: ...

    def draw(self, batch: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray], info: Any) -> list[np.ndarray]: ...

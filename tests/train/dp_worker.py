"""Runs 5 data-parallel train steps of a tiny classifier on a fixed global batch.

Used by test_data_parallel.py in subprocesses (fake CPU devices, or several processes):

    python dp_worker.py OUT.npz --devices N                  # one process, mesh of the first N devices
    python dp_worker.py OUT.npz --process I --processes P --port PORT   # one of P processes (gloo)

Every process feeds its own slice of the global batch; process 0 saves the per-step losses
and the final parameters (flattened) to OUT.npz.
"""

import argparse
import os

import numpy as np

GLOBAL_BATCH, IMAGE, STEPS = 8, 16, 5


def tiny_config():
    from vision_jax.train.config import base_config

    c = base_config("classification")
    c.model.backbone, c.model.width, c.model.stem = "resnet18", 4, "cifar"
    c.model.cross_replica_bn = True  # BN statistics over the global batch: N devices == 1 device
    c.data.image_size = IMAGE
    c.optimizer.learning_rate, c.optimizer.schedule = 0.05, "constant"
    c.train.num_steps = STEPS
    return c


def global_batch_numpy():
    rng = np.random.default_rng(1234)
    return {
        "image": rng.normal(size=(GLOBAL_BATCH, IMAGE, IMAGE, 3)).astype(np.float32),
        "label": rng.integers(0, 5, size=GLOBAL_BATCH).astype(np.int32),
        "example_valid": np.ones(GLOBAL_BATCH, bool),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    import jax

    config = tiny_config()
    if args.processes > 1:
        config.distributed.initialize = True
        config.distributed.coordinator_address = f"localhost:{args.port}"
        config.distributed.num_processes = args.processes
        config.distributed.process_id = args.process

    from jax.sharding import Mesh

    from vision_jax.data.datasets import DatasetInfo
    from vision_jax.tasks import get_task
    from vision_jax.train import parallel
    from vision_jax.train.optimizers import build_optimizer
    from vision_jax.train.state import create_train_state
    from vision_jax.train.steps import make_train_step

    parallel.initialize_distributed(config)
    devices = jax.devices()[: args.devices] if args.devices else jax.devices()
    mesh = Mesh(np.array(devices), (parallel.AXIS,))
    info = DatasetInfo(
        name="synthetic", num_classes=5, class_names=tuple("abcde"), num_examples={"train": GLOBAL_BATCH},
        image_shape=(IMAGE, IMAGE, 3), has=frozenset({"label"}),
    )
    task = get_task(config)
    model = task.build_model(info)
    tx, schedule = build_optimizer(config.optimizer, STEPS)
    state = parallel.replicate(create_train_state(model, task.init_inputs(info), tx, config.seed), mesh)
    step = make_train_step(task, model, tx, mesh, schedule)

    full = global_batch_numpy()
    per_process = GLOBAL_BATCH // jax.process_count()
    lo = jax.process_index() * per_process
    local = {k: v[lo : lo + per_process] for k, v in full.items()}
    losses = []
    for _ in range(STEPS):
        state, metrics = step(state, parallel.global_batch(local, mesh))
        losses.append(float(parallel.replicated_to_host(metrics["loss"])))
    params = parallel.replicated_to_host(state.params)
    stats = parallel.replicated_to_host(state.model_state)
    flat = {"/".join(str(k.key) for k in path): v for path, v in jax.tree_util.tree_leaves_with_path({"p": params, "s": stats})}
    if jax.process_index() == 0:
        np.savez(args.out, losses=np.array(losses), num_devices=len(devices), **flat)


if __name__ == "__main__":
    main()

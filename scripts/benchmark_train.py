"""Train-step throughput of ResNet-50 at 224² through the loop's own step, in images/s and GFLOP/s.

    python scripts/benchmark_train.py [--batch 8] [--size 224] [--steps 5] [--dtype float32]

The step is `vision_jax.train.steps.make_train_step` (shard_map over every local device, the
classification task's loss, SGD with momentum and weight decay from configs/classification/
imagenet_resnet50.py) on random images. Its floating-point operation count comes from XLA's own
cost analysis of the compiled step (forward, backward and update), so achieved GFLOP/s =
flops / median step time. The peer, measured in the same run, is a large float32 matmul
(`--matmul` n x n by n x n, 2 n³ flops): about the most this machine's XLA backend reaches, so the
ratio says how much of it the ResNet step uses. The machine is shared: load averages are printed.
bfloat16 is the GPU config's dtype; on CPU it is emulated and slow, hence --dtype float32 here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.tasks.classification import ClassificationTask
from vision_jax.train import parallel
from vision_jax.train.config import load_config_file
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.state import create_train_state
from vision_jax.train.steps import make_train_step

from timing import median_seconds

NUM_CLASSES = 1000


def load_config(dtype: str, size: int):
    config = load_config_file(os.path.join(REPO, "configs/classification/imagenet_resnet50.py"))
    config.model.dtype = dtype
    config.data.image_size = size
    return config


def compiled_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
        analysis = analysis[0]
    return float(analysis["flops"])


def resnet_row(args) -> tuple[float, float, float]:
    """(images/s, GFLOP per step, achieved GFLOP/s) of the train step."""
    config = load_config(args.dtype, args.size)
    task = ClassificationTask(config)
    info = DatasetInfo(
        name="random",
        num_classes=NUM_CLASSES,
        class_names=tuple(str(k) for k in range(NUM_CLASSES)),
        num_examples={"train": args.batch},
        image_shape=(args.size, args.size, 3),
        has=frozenset({"label"}),
    )
    model = task.build_model(info)
    mesh = parallel.make_mesh()
    tx, schedule = build_optimizer(config.optimizer, config.train.num_steps)
    state = parallel.replicate(create_train_state(model, task.init_inputs(info), tx, seed=0), mesh)
    rng = np.random.default_rng(0)
    batch = parallel.global_batch(
        {
            "image": rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32),
            "label": rng.integers(0, NUM_CLASSES, args.batch).astype(np.int32),
        },
        mesh,
    )
    step = make_train_step(task, model, tx, mesh, schedule)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    print(f"ResNet-50 train step compiled in {time.perf_counter() - start:.0f} s")
    flops = compiled_flops(compiled)
    holder = {"state": jax.block_until_ready(compiled(state, batch)[0])}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], batch)
        return metrics["loss"]

    seconds = median_seconds(one_step, args.steps, warmup=False)  # the step above warmed it up
    return args.batch / seconds, flops / 1e9, flops / seconds / 1e9


def matmul_gflops(n: int, repeats: int) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    seconds = median_seconds(lambda: matmul(a, b), repeats)
    return 2 * n**3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--matmul", type=int, default=2048)
    args = parser.parse_args()
    devices = jax.devices()
    print(
        f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; jax {jax.__version__}, {len(devices)} x {devices[0].platform}"
    )
    peer_before = matmul_gflops(args.matmul, 5)
    images_per_second, gflop_per_step, achieved = resnet_row(args)
    peer_after = matmul_gflops(args.matmul, 5)
    peer = max(peer_before, peer_after)  # the best of two, taken before and after: load only lowers it
    print(
        f"\nResNet-50 train step, {args.size}x{args.size}, batch {args.batch}, {args.dtype}; median of {args.steps} steps"
    )
    print("| what                               | images/s | GFLOP/step | GFLOP/s | share of matmul |")
    print("|------------------------------------|----------|------------|---------|-----------------|")
    print(
        f"| ResNet-50 train step (ours)        | {images_per_second:8.2f} | {gflop_per_step:10.1f} | {achieved:7.1f} | {achieved / peer:15.2f} |"
    )
    peer_label = f"float32 matmul {args.matmul}² (peer, XLA)"
    print(f"| {peer_label:<34} | {'':>8} | {2 * args.matmul**3 / 1e9:10.1f} | {peer:7.1f} | {1.0:15.2f} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

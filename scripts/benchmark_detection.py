"""Times Faster R-CNN R50-FPN on this machine and prints a table; the peer is tf.keras's ResNet-50.

    python scripts/benchmark_detection.py [--size 512] [--repeats 5] [--train_steps 3]

The model is configs/detection/faster_rcnn_R50_FPN.py (detectron2's R50-FPN: 1000 proposals per
image at test time, 80 classes) on a `size` x `size` canvas, with random weights and images
(training gets 20 random ground-truth boxes per image). Rows:
- inference latency of the whole jitted model at batch 1 and 2;
- the same inference split into three separately jitted parts fed with each other's outputs:
  backbone + FPN, RPN + proposal selection (top-k, decode, NMS), RoI heads (RoIAlign, box head,
  per-class decode, NMS, top 100); their shares are of the parts' sum;
- the ResNet-50 trunk alone beside tf.keras.applications.ResNet50(include_top=False) at the same
  input, calls alternated so that background load hits both alike (ratio = ours / peer);
- a training step (forward, detectron2 losses, backward, SGD update) at batch 2: images/s.
Times are medians of calls after compilation, each ended by block_until_ready. The machine is
shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from vision_jax.models.table import build_model
from vision_jax.tasks.detection import DetectionTask
from vision_jax.train.config import load_config_file

from timing import median_seconds

NUM_CLASSES = 80
NUM_OBJECTS = 20


def load_config(size: int):
    config = load_config_file(os.path.join(REPO, "configs/detection/faster_rcnn_R50_FPN.py"))
    config.data.image_size = config.data.min_size = config.data.max_size = size
    config.data.scale_jitter = ()
    return config


def alternate_medians(ours, peer, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(ours())
    peer()
    ours_times, peer_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(ours())
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer()
        peer_times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(peer_times)


def synthetic_batch(rng: np.random.Generator, batch: int, size: int) -> dict[str, np.ndarray]:
    centre = rng.uniform(0, size, (batch, NUM_OBJECTS, 2))
    half = rng.uniform(8, size / 4, (batch, NUM_OBJECTS, 2))
    boxes = np.clip(np.concatenate([centre - half, centre + half], -1), 0, size).astype(np.float32)
    return {
        "image": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
        "boxes": boxes,
        "classes": rng.integers(0, NUM_CLASSES, (batch, NUM_OBJECTS)).astype(np.int32),
        "valid": np.ones((batch, NUM_OBJECTS), bool),
        "is_crowd": np.zeros((batch, NUM_OBJECTS), bool),
        "image_info": np.tile(np.array([size, size, 1.0, 1.0], np.float32), (batch, 1)),
    }


def inference_rows(model, variables, keras_call, batch: int, size: int, repeats: int, rng) -> list[tuple]:
    """Rows for the whole model, its three parts and the trunk vs the Keras peer, at one batch size."""
    import tensorflow as tf

    whole = jax.jit(lambda v, x, s: model.apply(v, x, s, train=False))
    backbone_fpn = jax.jit(lambda v, x: model.apply(v, x, False, method="forward"))
    rpn_nms = jax.jit(lambda v, f, s: model.apply(v, f, s, False, method="proposals"))
    roi_heads = jax.jit(lambda v, f, p, pv, s: model.apply(v, f, p, pv, s, method="detect_from_proposals"))
    trunk = jax.jit(lambda v, x: model.apply(v, x, False, method=lambda m, x, t: m.backbone(x, t)))

    data = synthetic_batch(rng, batch, size)
    images, sizes = jnp.asarray(data["image"]), jnp.full((batch, 2), float(size))
    total = median_seconds(lambda: whole(variables, images, sizes), repeats)
    features = backbone_fpn(variables, images)
    proposals, _, valid = rpn_nms(variables, features, sizes)
    parts = {
        "backbone + FPN": median_seconds(lambda: backbone_fpn(variables, images), repeats),
        "RPN + proposals (NMS)": median_seconds(lambda: rpn_nms(variables, features, sizes), repeats),
        "RoI heads + post-processing": median_seconds(
            lambda: roi_heads(variables, features, proposals, valid, sizes), repeats
        ),
    }
    rows = [("inference, whole model", batch, total * 1e3, "", "", f"{batch / total:.2f} img/s")]
    parts_sum = sum(parts.values())
    for name, seconds in parts.items():
        rows.append((f"  {name}", batch, seconds * 1e3, "", "", f"{100 * seconds / parts_sum:.0f}% of parts"))
    tf_images = tf.constant(data["image"])
    ours, peer = alternate_medians(lambda: trunk(variables, images), lambda: keras_call(tf_images).numpy(), repeats)
    rows.append(
        ("ResNet-50 trunk vs tf.keras ResNet50", batch, ours * 1e3, f"{peer * 1e3:.0f}", f"{ours / peer:.2f}", "")
    )
    return rows


def train_row(model, task, variables, batch: int, size: int, steps: int, rng) -> tuple[tuple, float]:
    """(row, compile seconds) for the median training step at `batch` images."""
    data = {k: jnp.asarray(v) for k, v in synthetic_batch(rng, batch, size).items()}
    tx = optax.sgd(0.01, momentum=0.9)
    params, model_state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    # `data` is an argument, not a closed-over constant: as a constant, XLA folds the RPN's IoU
    # reduction over every anchor x box at compile time (seconds; scripts/benchmark_compile.py).
    @jax.jit
    def train_step(params, opt_state, model_state, key, data):
        def loss_fn(p):
            return task.loss(model, {"params": p, **model_state}, data, key, True)

        (loss, (_, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, new_state, loss

    start = time.perf_counter()
    state = jax.block_until_ready(train_step(params, tx.init(params), model_state, jax.random.PRNGKey(0), data))
    compile_seconds = time.perf_counter() - start
    times = []
    for step in range(steps):
        start = time.perf_counter()
        state = jax.block_until_ready(train_step(*state[:3], jax.random.PRNGKey(step + 1), data))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    row = ("train step (fwd + losses + bwd + SGD)", batch, seconds * 1e3, "", "", f"{batch / seconds:.2f} img/s")
    return row, compile_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train_steps", type=int, default=3)
    args = parser.parse_args()
    print(
        f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.devices()[0].platform})"
    )

    import tensorflow as tf

    config = load_config(args.size)
    model = build_model(config, NUM_CLASSES)
    rng = np.random.default_rng(0)
    init = jax.jit(lambda k: model.init(k, jnp.zeros((1, args.size, args.size, 3)), train=False))
    variables = init(jax.random.key(0, impl="rbg"))
    keras_trunk = tf.keras.applications.ResNet50(include_top=False, weights=None, input_shape=(args.size, args.size, 3))
    keras_call = tf.function(lambda x: keras_trunk(x, training=False))

    rows = []
    for batch in (1, 2):
        rows += inference_rows(model, variables, keras_call, batch, args.size, args.repeats, rng)
    row, compile_seconds = train_row(model, DetectionTask(config), variables, 2, args.size, args.train_steps, rng)
    rows.append(row)

    print(
        f"\nFaster R-CNN R50-FPN, {args.size}x{args.size}, {NUM_CLASSES} classes, random weights; medians of "
        f"{args.repeats} calls (train: {args.train_steps} steps, compiled in {compile_seconds:.0f} s)"
    )
    print(f"| {'what':<40} | batch | {'ours ms':>9} | {'peer ms':>8} | {'ratio':>5} | {'':<16} |")
    print(f"|{'-' * 42}|-------|{'-' * 11}|{'-' * 10}|{'-' * 7}|{'-' * 18}|")
    for what, b, ms, peer, ratio, note in rows:
        print(f"| {what:<40} | {b:>5} | {ms:>9.0f} | {peer:>8} | {ratio:>5} | {note:<16} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

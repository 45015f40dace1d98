"""ResNet-50 on this CPU, ours against tf.keras in the same run: the train step, inference, and each
convolution of the network alone.

    python scripts/benchmark_resnet50.py [--batch 8] [--size 224] [--repeats 3] [--no_layers] [--json PATH]

float32 throughout (the GPU config's bfloat16 is emulated on CPU). Rows, each timed as the median of
`repeats` calls after a warm-up, ours and the peer called alternately so that the machine's other load
hits both alike:
- train step: ours is the loop's own step (`make_train_step`: forward, label-smoothed cross-entropy,
  backward, SGD with Nesterov momentum and weight decay, BatchNorm statistics, the non-finite guard),
  configs/classification/imagenet_resnet50.py at float32; the peer is tf.keras.applications.ResNet50
  (weights=None, logits) trained by a `tf.function` with a GradientTape, the same loss and
  keras.optimizers.SGD(momentum=0.9, nesterov=True, weight_decay=1e-4). A second peer runs the same
  Keras step with `jit_compile=True`, i.e. through XLA's CPU backend, the one JAX uses: where it is as
  slow as ours, the gap is the backend, not our model code.
- inference: our classifier `apply(train=False)` jitted; tf.keras' model(x, training=False) in a
  tf.function (and with jit_compile=True).
- convolution table (unless --no_layers): every distinct convolution of ResNet-50 at this batch and
  size, alone, forward and backward (gradients of input and kernel; kernel only for the stem, whose
  input needs none), ours `lax.conv_general_dilated` (NHWC/HWIO, as flax.linen.Conv emits) jitted, the
  peer tf.nn.conv2d / its gradients in a tf.function (TensorFlow's oneDNN kernels on x86); then the sum
  over the network, each shape counted as often as ResNet-50 has it. Comparing that sum with the whole
  step says how much of the step is convolution, and how much of the gap. For the 1x1 convolutions,
  the backward of the same arithmetic as a matrix product (how PointwiseConv runs them) is timed too.
GFLOP/s of the whole steps use XLA's cost analysis of our compiled step (TF does the same arithmetic).
The machine is shared: the 1-minute load average is printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import full_size
from timing import median_seconds

CONFIG = "configs/classification/imagenet_resnet50.py"
NUM_CLASSES = 1000


def alternate_medians(ours, peer, repeats: int) -> tuple[float, float]:
    """Medians of `repeats` alternating calls of ours() and peer() (each returns something to block on)."""
    jax.block_until_ready(ours())
    _finish(peer())
    ours_times, peer_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(ours())
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _finish(peer())
        peer_times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(peer_times)


def _finish(result):
    """Waits for a TensorFlow result (eager tensors compute when read)."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(result):
        tensor.numpy()


def row(what: str, ours: float, peer: float | None, peer_name: str, batch: int, gflop: float = 0.0, **extra) -> dict:
    return {
        "what": what,
        "peer": peer_name,
        "batch": batch,
        "ours_ms": ours * 1e3,
        "peer_ms": None if peer is None else peer * 1e3,
        "ours_over_peer": None if peer is None else ours / peer,
        "ours_images_per_s": batch / ours,
        "peer_images_per_s": None if peer is None else batch / peer,
        "ours_gflop_per_s": gflop / ours if gflop else None,
        "load_1min": os.getloadavg()[0],
        **extra,
    }


# ----------------------------------------------------------------------------- whole network
def ours_steps(batch: int, size: int):
    """(train step closure, inference closure, train GFLOP, inference GFLOP) of our ResNet-50."""
    overrides = {"model.dtype": "float32", "data.image_size": size}
    train_step = full_size.build_train_step(CONFIG, per_device_batch=batch, overrides=overrides)
    data = full_size.synthetic_batch(train_step, np.random.default_rng(0))
    images = jnp.asarray(data["image"])
    state = train_step.concrete_state()
    compiled_train = train_step.step.lower(state, data).compile()
    holder = {"state": state}

    def train():
        holder["state"], metrics = compiled_train(holder["state"], data)
        return metrics["loss"]

    model = train_step.model
    infer = jax.jit(lambda variables, x: model.apply(variables, x, train=False))
    compiled_infer = infer.lower(state.variables, images).compile()

    def inference():  # the train step donates its state: read the live one
        return compiled_infer(holder["state"].variables, images)

    return train, inference, full_size.flops_of(compiled_train) / 1e9, full_size.flops_of(compiled_infer) / 1e9


def keras_steps(batch: int, size: int, jit_compile: bool):
    """(train step closure, inference closure) of tf.keras' ResNet50 with the same loss and optimizer."""
    import tensorflow as tf

    keras = tf.keras
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    rng = np.random.default_rng(1)
    images = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    labels = tf.one_hot(tf.constant(rng.integers(0, NUM_CLASSES, batch)), NUM_CLASSES)

    @tf.function(jit_compile=jit_compile)
    def train(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(jit_compile=jit_compile)
    def infer(x):
        return model(x, training=False)

    return (lambda: train(images, labels)), (lambda: infer(images))


def network_rows(batch: int, size: int, repeats: int) -> list[dict]:
    ours_train, ours_infer, train_gflop, infer_gflop = ours_steps(batch, size)
    rows = []
    for jit_compile in (False, True):
        peer_name = "tf.keras ResNet50" + (" (jit_compile=True: XLA CPU)" if jit_compile else " (TF kernels, oneDNN)")
        keras_train, keras_infer = keras_steps(batch, size, jit_compile)
        ours, peer = alternate_medians(ours_train, keras_train, repeats)
        rows.append(row("train step", ours, peer, peer_name, batch, train_gflop, gflop_per_step=train_gflop))
        ours, peer = alternate_medians(ours_infer, keras_infer, repeats)
        rows.append(row("inference", ours, peer, peer_name, batch, infer_gflop, gflop_per_step=infer_gflop))
    return rows


# ----------------------------------------------------------------------------- convolutions
def resnet50_convolutions(size: int, width: int = 64) -> list[dict]:
    """ResNet-50 v1.5's convolutions (stem `width`, stage widths width x 1, 2, 4, 8) as {'name', 'input'
    (H = W), 'cin', 'cout', 'kernel', 'stride', 'count', 'input_grad'}: one entry per distinct shape,
    counted as often as the network has it."""
    convs: dict[tuple, dict] = {}

    def add(name, side, cin, cout, kernel, stride, input_grad=True):
        key = (side, cin, cout, kernel, stride)
        if key in convs:
            convs[key]["count"] += 1
        else:
            convs[key] = {"name": name, "input": side, "cin": cin, "cout": cout, "kernel": kernel,
                          "stride": stride, "count": 1, "input_grad": input_grad}  # fmt: skip

    add("stem 7x7/2", size, 3, width, 7, 2, input_grad=False)
    side, cin = size // 4, width
    for stage, (blocks, stage_width) in enumerate(zip((3, 4, 6, 3), (width, 2 * width, 4 * width, 8 * width))):
        stride = 1 if stage == 0 else 2
        for block in range(blocks):
            s = stride if block == 0 else 1
            add(f"res{stage + 2} 1x1 reduce", side, cin, stage_width, 1, 1)
            add(f"res{stage + 2} 3x3" + ("/2" if s == 2 else ""), side, stage_width, stage_width, 3, s)
            out_side = side // s
            add(f"res{stage + 2} 1x1 expand", out_side, stage_width, 4 * stage_width, 1, 1)
            if block == 0:
                add(f"res{stage + 2} projection" + ("/2" if s == 2 else ""), side, cin, 4 * stage_width, 1, s)
            side, cin = out_side, 4 * stage_width
    return list(convs.values())


def conv_flops(conv: dict, batch: int) -> float:
    out = conv["input"] // conv["stride"]
    return 2.0 * batch * out * out * conv["cout"] * conv["cin"] * conv["kernel"] ** 2


def conv_rows(batch: int, size: int, repeats: int) -> list[dict]:
    import tensorflow as tf

    rows = []
    rng = np.random.default_rng(2)
    for conv in resnet50_convolutions(size):
        k, s, pad = conv["kernel"], conv["stride"], conv["kernel"] // 2
        out_side = conv["input"] // s
        x = rng.normal(size=(batch, conv["input"], conv["input"], conv["cin"])).astype(np.float32)
        w = (rng.normal(size=(k, k, conv["cin"], conv["cout"])) * 0.01).astype(np.float32)
        g = rng.normal(size=(batch, out_side, out_side, conv["cout"])).astype(np.float32)

        def ours_conv(x, w):
            return lax.conv_general_dilated(x, w, (s, s), ((pad, pad), (pad, pad)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip

        def ours_gradients(x, w, g):
            _, vjp = jax.vjp(ours_conv, x, w)
            grad_x, grad_w = vjp(g)
            return (grad_x, grad_w) if conv["input_grad"] else grad_w  # XLA drops an unused grad_x

        ours_forward, ours_backward = jax.jit(ours_conv), jax.jit(ours_gradients)

        def dot_gradients(x, w, g):  # a 1x1 convolution as the model runs it (PointwiseConv)
            _, vjp = jax.vjp(lambda x, w: jnp.einsum("bhwc,cd->bhwd", x[:, ::s, ::s], w[0, 0]), x, w)
            grad_x, grad_w = vjp(g)
            return (grad_x, grad_w) if conv["input_grad"] else grad_w
        jx, jw, jg = jnp.asarray(x), jnp.asarray(w), jnp.asarray(g)
        # TensorFlow's "SAME" pads (k-1)//2 before and k//2 after for these odd kernels when stride 1, and
        # the same total for stride 2: the same output shape and arithmetic as our symmetric padding.
        tf_forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, s, "SAME"))
        input_sizes = tf.constant(x.shape)

        @tf.function
        def tf_backward(x, w, g):
            grads = [tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=g,
                                                     strides=[1, s, s, 1], padding="SAME")]  # fmt: skip
            if conv["input_grad"]:
                grads.append(tf.raw_ops.Conv2DBackpropInput(input_sizes=input_sizes, filter=w, out_backprop=g,
                                                            strides=[1, s, s, 1], padding="SAME"))  # fmt: skip
            return grads

        tx, tw, tg = tf.constant(x), tf.constant(w), tf.constant(g)
        flops = conv_flops(conv, batch)
        forward = alternate_medians(lambda: ours_forward(jx, jw), lambda: tf_forward(tx, tw), repeats)
        backward = alternate_medians(lambda: ours_backward(jx, jw, jg), lambda: tf_backward(tx, tw, tg), repeats)
        dot_backward = jax.jit(dot_gradients)
        dot_ms = median_seconds(lambda: dot_backward(jx, jw, jg), repeats) * 1e3 if k == 1 else None
        rows.append({
            **conv,
            "ours_backward_as_dot_ms": dot_ms,
            "batch": batch,
            "gflop_forward": flops / 1e9,
            "gflop_backward": flops * (2 if conv["input_grad"] else 1) / 1e9,
            "ours_forward_ms": forward[0] * 1e3,
            "tf_forward_ms": forward[1] * 1e3,
            "ours_backward_ms": backward[0] * 1e3,
            "tf_backward_ms": backward[1] * 1e3,
            "load_1min": os.getloadavg()[0],
        })  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- report
def print_network(rows: list[dict]) -> None:
    print(f"| {'what':<11} | {'peer':<46} | ours ms | peer ms | ours / peer | ours img/s | peer img/s | ours GFLOP/s | load |")
    print(f"|{'-' * 13}|{'-' * 48}|---------|---------|-------------|------------|------------|--------------|------|")
    for r in rows:
        print(f"| {r['what']:<11} | {r['peer']:<46} | {r['ours_ms']:>7.0f} | {r['peer_ms']:>7.0f} | "
              f"{r['ours_over_peer']:>11.2f} | {r['ours_images_per_s']:>10.2f} | {r['peer_images_per_s']:>10.2f} | "
              f"{r['ours_gflop_per_s']:>12.1f} | {r['load_1min']:>4.1f} |")  # fmt: skip


def print_convolutions(rows: list[dict]) -> dict:
    print(f"| {'convolution':<22} | input | cin->cout | count | fwd ours ms | fwd TF ms | ratio | bwd ours ms | "
          "bwd TF ms | ratio | bwd as dot ms | ours fwd GFLOP/s | TF fwd GFLOP/s | load |")  # fmt: skip
    print(f"|{'-' * 24}|-------|-----------|-------|-------------|-----------|-------|-------------|-----------|"
          "-------|---------------|------------------|----------------|------|")  # fmt: skip
    totals = {"ours_forward_ms": 0.0, "tf_forward_ms": 0.0, "ours_backward_ms": 0.0, "tf_backward_ms": 0.0,
              "ours_model_backward_ms": 0.0}
    for r in rows:
        for key in ("ours_forward_ms", "tf_forward_ms", "ours_backward_ms", "tf_backward_ms"):
            totals[key] += r["count"] * r[key]
        dot = f"{r['ours_backward_as_dot_ms']:.1f}" if r["ours_backward_as_dot_ms"] is not None else ""
        model_backward = r["ours_backward_as_dot_ms"] if r["ours_backward_as_dot_ms"] is not None else r["ours_backward_ms"]
        totals["ours_model_backward_ms"] += r["count"] * model_backward
        print(f"| {r['name']:<22} | {r['input']:>5} | {r['cin']:>4}->{r['cout']:<4} | {r['count']:>5} | "
              f"{r['ours_forward_ms']:>11.1f} | {r['tf_forward_ms']:>9.1f} | "
              f"{r['ours_forward_ms'] / r['tf_forward_ms']:>5.2f} | {r['ours_backward_ms']:>11.1f} | "
              f"{r['tf_backward_ms']:>9.1f} | {r['ours_backward_ms'] / r['tf_backward_ms']:>5.2f} | "
              f"{dot:>13} | {r['gflop_forward'] / r['ours_forward_ms'] * 1e3:>16.1f} | "
              f"{r['gflop_forward'] / r['tf_forward_ms'] * 1e3:>14.1f} | {r['load_1min']:>4.1f} |")  # fmt: skip
    t = totals
    print(f"| {'ResNet-50 sum (x count)':<22} | {'':>5} | {'':>9} | {'':>5} | {t['ours_forward_ms']:>11.0f} | "
          f"{t['tf_forward_ms']:>9.0f} | {t['ours_forward_ms'] / t['tf_forward_ms']:>5.2f} | "
          f"{t['ours_backward_ms']:>11.0f} | {t['tf_backward_ms']:>9.0f} | "
          f"{t['ours_backward_ms'] / t['tf_backward_ms']:>5.2f} | {t['ours_model_backward_ms']:>13.0f} | {'':>16} | "
          f"{'':>14} | {'':>4} |")
    print(f"Backward as the model runs it (1x1 as matrix products): {t['ours_model_backward_ms']:.0f} ms, "
          f"{t['ours_model_backward_ms'] / t['tf_backward_ms']:.2f} x TF's")  # fmt: skip
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no_layers", action="store_true", help="skip the per-convolution table")
    parser.add_argument("--no_network", action="store_true", help="skip the whole-network rows")
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args()
    import tensorflow as tf

    load_before = full_size.load_average()
    print(f"load average before: {load_before}; {os.cpu_count()} CPUs; jax {jax.__version__}, tf {tf.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip
    result = {"load_average_before": load_before, "batch": args.batch, "size": args.size,
              "xla_flags": os.environ.get("XLA_FLAGS", "")}  # fmt: skip
    if not args.no_network:
        result["network"] = network_rows(args.batch, args.size, args.repeats)
        print(f"\nResNet-50, {args.size}², batch {args.batch}, float32; medians of {args.repeats} alternating calls")
        print_network(result["network"])
    if not args.no_layers:
        result["convolutions"] = conv_rows(args.batch, args.size, args.repeats)
        print(f"\nResNet-50's convolutions alone, {args.size}², batch {args.batch}, float32; ours = XLA "
              f"(lax.conv_general_dilated), TF = tf.nn.conv2d and its gradients; medians of {args.repeats}")  # fmt: skip
        result["convolution_totals"] = print_convolutions(result["convolutions"])
    result["load_average_after"] = full_size.load_average()
    print(f"load average after: {result['load_average_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

"""Compile seconds of the full-size detection and segmentation configs' train steps, one compile each.

    python scripts/benchmark_compile.py [--devices 8] [--configs a.py,b.py] [--peer_size 512] [--json PATH]

Each step is the loop's own (`make_train_step`: forward, loss, backward, optimizer update, BatchNorm
statistics) at the config's per-device batch, train.batch_size // --devices (8: the GPU host the
recipes copy, e.g. detectron2's 16 images = 8 x 2), built on abstract arrays by scripts/full_size.py
and compiled by XLA's CPU backend. Per config: seconds to trace and lower (JAX), seconds to compile
(XLA), and how much of the compile XLA spent constant-folding single instructions that took over
1 s (its slow-operation alarm, read from the process' stderr while it runs).

The peer, in the same run: Faster R-CNN R50-FPN at --peer_size² (512, scripts/benchmark_detection.py's
canvas), compiled twice: with the batch passed in (as the loop does), and the way benchmark_detection.py
compiled it before issue 14, with a batch closed over as a constant: XLA then constant-folds the RPN's
IoU reduction over every anchor x ground-truth box (f32[batch, anchors]) at compile time.
The machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time

import jax

import full_size

# XLA's slow_operation_alarm, once an operation has run past 1 s: "The operation took 58.9s\nConstant folding ..."
# (absl's duration format: "58.9s", "1m7.3s", "1h2m3s").
FOLDING_DONE = re.compile(r"The operation took ((?:[0-9]+h)?(?:[0-9]+m)?[0-9.]+s)\s*\nConstant folding")
DURATION_PART = re.compile(r"([0-9.]+)([hms])")


def duration_seconds(text: str) -> float:
    """'1m7.3s' -> 67.3."""
    return sum(float(value) * {"h": 3600, "m": 60, "s": 1}[unit] for value, unit in DURATION_PART.findall(text))


PEER_CONFIG = "configs/detection/faster_rcnn_R50_FPN.py"


@contextlib.contextmanager
def captured_stderr(sink: list):
    """Redirects file descriptor 2 (where XLA's C++ logging writes) to a file; appends its text to
    `sink` and echoes it back to the real stderr on exit."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            sink.append(text)
            sys.stderr.write(text)


def timed_compile(lower) -> dict:
    """Lowers (`lower()` returns a jax Lowered) and compiles; seconds of each and the folding alarms."""
    log: list[str] = []
    with captured_stderr(log):
        start = time.perf_counter()
        lowered = lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        done = time.perf_counter()
    return {
        "compiled": compiled,
        "lower_seconds": lowered_at - start,
        "compile_seconds": done - lowered_at,
        "folding_seconds": sum(duration_seconds(text) for text in FOLDING_DONE.findall(log[0])),
    }


def config_row(path: str, devices: int) -> dict:
    train_step = full_size.build_train_step(path, devices=devices)
    result = timed_compile(lambda: train_step.step.lower(train_step.state, train_step.batch))
    compiled = result.pop("compiled")
    return {
        "config": path,
        "per_device_batch": train_step.per_device_batch,
        "image_size": int(train_step.config.data.image_size),
        "dtype": train_step.config.model.dtype,
        **result,
        "gflop_per_step": full_size.flops_of(compiled) / 1e9,
        **full_size.memory_of(compiled),
    }


def peer_rows(devices: int, size: int) -> list[dict]:
    """The peer: Faster R-CNN R50-FPN on a `size`² canvas (scripts/benchmark_detection.py's), its step
    compiled with the batch passed in, then with the same batch (random boxes) a compile-time constant."""
    import numpy as np

    overrides = {"data.image_size": size, "data.min_size": size, "data.max_size": size, "data.scale_jitter": ()}
    train_step = full_size.build_train_step(PEER_CONFIG, devices=devices, overrides=overrides)
    batch = full_size.synthetic_batch(train_step, np.random.default_rng(0))
    constant_step = jax.jit(lambda state: train_step.step(state, batch))
    lowerings = {
        "batch passed in": lambda: train_step.step.lower(train_step.state, train_step.batch),
        "batch a constant (peer)": lambda: constant_step.lower(train_step.state),
    }
    rows = []
    for how, lower in lowerings.items():
        result = timed_compile(lower)
        result.pop("compiled")
        rows.append({"config": f"{PEER_CONFIG} at {size}², {how}", "per_device_batch": train_step.per_device_batch,
                     "image_size": size, "dtype": train_step.config.model.dtype, **result})  # fmt: skip
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=full_size.DEFAULT_DEVICES,
                        help="per-device batch = train.batch_size // devices")  # fmt: skip
    parser.add_argument("--configs", default="", help="comma-separated config paths (default: every full-size "
                        "detection and segmentation config)")  # fmt: skip
    parser.add_argument("--peer_size", type=int, default=512, help="canvas of the Faster R-CNN peer; 0 skips it")
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args()
    paths = args.configs.split(",") if args.configs else (
        full_size.full_size_configs("detection") + full_size.full_size_configs("segmentation"))  # fmt: skip
    load_before = full_size.load_average()
    print(f"load average before: {load_before}; {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.devices()[0].platform})")
    header = (f"| {'config':<74} | batch | size | {'dtype':<8} | lower s | compile s | of it folding s | load |\n"
              f"|{'-' * 76}|-------|------|{'-' * 10}|---------|-----------|-----------------|------|")  # fmt: skip
    rows = []

    def report(row: dict) -> None:
        """Prints the row as soon as it is measured (a run takes minutes) and rewrites the JSON."""
        row["load_1min"] = os.getloadavg()[0]
        rows.append(row)
        print(f"| {row['config']:<74} | {row['per_device_batch']:>5} | {row['image_size']:>4} | {row['dtype']:<8} | "
              f"{row['lower_seconds']:>7.1f} | {row['compile_seconds']:>9.1f} | {row['folding_seconds']:>15.1f} | {row['load_1min']:>4.1f} |",
              flush=True)  # fmt: skip
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"load_average_before": load_before, "load_average_after": full_size.load_average(),
                           "devices_assumed": args.devices, "rows": rows}, f, indent=1)  # fmt: skip

    print(f"\nTrain-step compile time, XLA {jax.devices()[0].platform}, per-device batch = train.batch_size // {args.devices}")
    print(header, flush=True)
    for path in paths:
        report(config_row(path, args.devices))
    for row in peer_rows(args.devices, args.peer_size) if args.peer_size else []:
        report(row)
    print(f"load average after: {full_size.load_average()}")


if __name__ == "__main__":
    main()

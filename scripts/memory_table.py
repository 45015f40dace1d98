"""Memory of every full-size config's train step, from XLA's memory analysis of the compiled step.

    python scripts/memory_table.py [--devices 8] [--configs a.py,b.py] [--reuse COMPILE_JSON] [--json PATH]

Each step is the loop's own (`make_train_step`) at the config's per-device batch, train.batch_size //
--devices (8: the GPU host the recipes copy), in the config's model.dtype, built on abstract arrays by
scripts/full_size.py and compiled once by this machine's XLA backend. Columns, from
`compiled.memory_analysis()`: arguments (train state + batch), outputs (new state + metrics), aliased
(outputs written into the donated state's buffers), temporaries (activations kept for the backward
pass, gradients, workspace) and total = arguments + outputs - aliased + temporaries, the most live at
once. The cross-check column counts the arguments independently: the bytes of every leaf of the
abstract state and batch. XLA's CPU and GPU backends fuse and lay out differently, so a GPU's figure
differs somewhat: scripts/benchmark_gpu.py reports the device's measured peak.

Compiles are slow on a small CPU: --reuse takes the rows of a scripts/benchmark_compile.py --json file
(made with the same --devices) for the configs it holds, and compiles only the others.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

import full_size

GIB = 2.0**30


def counted_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def count_parameters(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def memory_row(path: str, devices: int) -> dict:
    train_step = full_size.build_train_step(path, devices=devices)
    compiled, seconds = full_size.compile_step(train_step)
    return {
        "config": path,
        "per_device_batch": train_step.per_device_batch,
        "image_size": int(train_step.config.data.image_size),
        "dtype": train_step.config.model.dtype,
        "compile_seconds": seconds,
        **full_size.memory_of(compiled),
        "counted_argument_bytes": counted_bytes((train_step.state, train_step.batch)),
        "parameters": count_parameters(train_step.state.params),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=full_size.DEFAULT_DEVICES,
                        help="per-device batch = train.batch_size // devices")  # fmt: skip
    parser.add_argument("--configs", default="", help="comma-separated config paths (default: every full-size one)")
    parser.add_argument("--reuse", default="", help="a benchmark_compile.py --json file whose rows to reuse")
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args()
    paths = args.configs.split(",") if args.configs else full_size.full_size_configs()
    load_before = full_size.load_average()
    print(f"load average before: {load_before}; jax {jax.__version__} ({jax.devices()[0].platform})")
    reused = {}
    if args.reuse:
        with open(args.reuse) as f:
            compiled_before = json.load(f)
        if compiled_before["devices_assumed"] != args.devices:
            raise ValueError(f"--reuse {args.reuse} was measured with --devices {compiled_before['devices_assumed']}, "
                             f"not {args.devices}")  # fmt: skip
        reused = {r["config"]: r for r in compiled_before["rows"] if r["config"] in paths}
    rows = []
    for path in paths:
        if path in reused:
            train_step = full_size.build_train_step(path, devices=args.devices)  # abstract: no compile
            rows.append({**reused[path], "reused_from": args.reuse,
                         "counted_argument_bytes": counted_bytes((train_step.state, train_step.batch)),
                         "parameters": count_parameters(train_step.state.params)})  # fmt: skip
        else:
            rows.append(memory_row(path, args.devices))
    load_after = full_size.load_average()

    print(f"\nTrain-step memory (XLA {jax.devices()[0].platform} memory analysis), GiB; "
          f"per-device batch = train.batch_size // {args.devices}")  # fmt: skip
    print(f"| {'config':<54} | batch | size | {'dtype':<8} | params (M) | arguments | (counted) | outputs | "
          "aliased | temporaries | total |")  # fmt: skip
    print(f"|{'-' * 56}|-------|------|{'-' * 10}|------------|-----------|-----------|---------|---------|"
          "-------------|-------|")  # fmt: skip
    for r in rows:
        print(f"| {r['config']:<54} | {r['per_device_batch']:>5} | {r['image_size']:>4} | {r['dtype']:<8} | "
              f"{r['parameters'] / 1e6:>10.1f} | {r['argument_bytes'] / GIB:>9.2f} | "
              f"{r['counted_argument_bytes'] / GIB:>9.2f} | {r['output_bytes'] / GIB:>7.2f} | "
              f"{r['alias_bytes'] / GIB:>7.2f} | {r['temp_bytes'] / GIB:>11.2f} | {r['total_bytes'] / GIB:>5.2f} |")  # fmt: skip
    print(f"load average after: {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average_before": load_before, "load_average_after": load_after,
                       "devices_assumed": args.devices, "rows": rows}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()

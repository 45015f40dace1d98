"""Train-step speed, memory and model FLOP utilisation of the full-size configs on this host's GPUs.

    pip install -U "jax[cuda12]"      # on a host with NVIDIA GPUs
    python scripts/benchmark_gpu.py [--models resnet50,faster_rcnn,mask_rcnn,ssd300,yolov3]
        [--dtypes bfloat16,float32] [--devices 8] [--steps 10] [--json PATH]
    python scripts/benchmark_gpu.py --tiny --in_process   # any machine, tiny widths and sizes (the CPU test)

For each model and each compute dtype (config.model.dtype; parameters stay float32), the loop's own train
step (`make_train_step`: forward, loss, backward, optimizer, BatchNorm statistics, data parallel over
every local device) trains for --steps steps on one synthetic batch already on the devices
(scripts/full_size.py: random images, 20 random boxes per image, box-shaped masks), per-device batch =
train.batch_size // --devices as in the config's recipe (8 GPUs). Columns:
- step time: median seconds of the timed steps (after one compiling step); images/s = global batch / it;
- peak memory: device.memory_stats()['peak_bytes_in_use'] of device 0 (GPU/TPU; absent on CPU). The
  peak is per process, so by default each (model, dtype) runs in a fresh subprocess;
- GFLOP/step: XLA's cost analysis of the compiled per-device program; MFU = that / step time / the
  device's peak FLOP/s for the dtype (PEAK_TFLOPS below, dense, no sparsity). float32 rows use the
  TF32 tensor-core peak where the GPU has one: JAX's default matmul precision lets XLA run float32
  dots and convolutions in TF32 on Ampere and later.
The GPU's table goes in README.md's "Speed and memory" section; on CPU the rows still fill (no peak
memory, no MFU), which is what the test checks at --tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

import full_size

MODELS = {
    "resnet50": "configs/classification/imagenet_resnet50.py",
    "faster_rcnn": "configs/detection/faster_rcnn_R50_FPN.py",
    "mask_rcnn": "configs/detection/mask_rcnn_R50_FPN.py",
    "ssd300": "configs/detection/ssd300_vgg16_voc.py",
    "yolov3": "configs/detection/yolov3_darknet53_coco.py",
}

# Peak dense TFLOP/s per device by (a lower-case substring of) jax's device_kind, first match wins
# (so 'h100 pcie' precedes 'h100', 'a100' precedes 'a10', 'l40s' precedes 'l4'):
# (bfloat16, float32 as XLA runs it: TF32 tensor cores where they exist, else plain FP32).
PEAK_TFLOPS = (
    # H100 PCIe: BF16 756 (1513 with sparsity), TF32 378, https://www.nvidia.com/en-us/data-center/h100/
    ("h100 pcie", 756.0, 378.0),
    # H100 SXM: BF16 989 (1979 sparse), TF32 495; same page.
    ("h100", 989.0, 495.0),
    # H200 SXM: BF16 989, TF32 495 (H100's compute, more memory), https://www.nvidia.com/en-us/data-center/h200/
    ("h200", 989.0, 495.0),
    # A100 (SXM and PCIe, 40/80 GB): BF16 312, TF32 156, https://www.nvidia.com/en-us/data-center/a100/
    ("a100", 312.0, 156.0),
    # L40S: BF16 362 (733 sparse), TF32 183, https://www.nvidia.com/en-us/data-center/l40s/
    ("l40s", 362.0, 183.0),
    # L4: BF16 121 (242 sparse), TF32 60 (120 sparse), https://www.nvidia.com/en-us/data-center/l4/
    ("l4", 121.0, 60.0),
    # A10: BF16 125, TF32 62.5, https://www.nvidia.com/en-us/data-center/products/a10-gpu/
    ("a10", 125.0, 62.5),
    # V100 SXM2: FP32 15.7, no BF16 or TF32 tensor cores (bfloat16 runs at most at the FP32 rate),
    # https://www.nvidia.com/en-us/data-center/v100/ (PCIe: 14.0; the SXM2 figure is used for both)
    ("v100", 15.7, 15.7),
    # T4: FP32 8.1, no BF16 or TF32 tensor cores, https://www.nvidia.com/en-us/data-center/tesla-t4/
    ("t4", 8.1, 8.1),
)

TINY_OVERRIDES = {  # keys absent from a config are skipped
    "model.width": 8,
    "data.max_instances": 8,
    "data.scale_jitter": (),
    "model.rcnn.fpn_channels": 16,
    "model.rcnn.box_head_fc_dim": 32,
    "model.rcnn.mask_head_conv_dim": 8,
    "model.rcnn.rpn_pre_nms_topk_train": 200,
    "model.rcnn.rpn_post_nms_topk_train": 100,
    "model.rcnn.roi_num_samples": 32,
}
TINY_SIZES = {"resnet50": 64, "faster_rcnn": 128, "mask_rcnn": 128, "ssd300": 300, "yolov3": 128}

ROW_KEYS = ("model", "config", "dtype", "device", "devices", "global_batch", "image_size", "step_seconds",
            "images_per_s", "gflop_per_step", "achieved_tflop_per_s", "peak_tflop_per_s", "mfu",
            "peak_memory_bytes", "compile_seconds", "tiny")  # fmt: skip


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    kind = device_kind.lower()
    for name, bf16, fp32 in PEAK_TFLOPS:
        if name in kind:
            return bf16 if dtype == "bfloat16" else fp32
    return None


def get_config_value(config, dotted: str):
    for part in dotted.split("."):
        if part not in config:
            return None
        config = config[part]
    return config


def overrides_for(model: str, dtype: str, tiny: bool) -> dict:
    overrides = {"model.dtype": dtype}
    if tiny:
        config = full_size.load_config_file(os.path.join(full_size.REPO, MODELS[model]))
        overrides.update({k: v for k, v in TINY_OVERRIDES.items() if get_config_value(config, k) is not None})
        size = TINY_SIZES[model]
        for key in ("data.image_size", "data.min_size", "data.max_size"):
            if get_config_value(config, key) is not None:
                overrides[key] = size
        if get_config_value(config, "data.mask_size"):
            overrides["data.mask_size"] = size // 2
    return overrides


def measure(model: str, dtype: str, devices: int, steps: int, tiny: bool) -> dict:
    """One row: builds, compiles and trains the model's step on a synthetic batch."""
    per_device = 2 if tiny else None
    train_step = full_size.build_train_step(MODELS[model], per_device_batch=per_device, devices=devices,
                                            overrides=overrides_for(model, dtype, tiny))  # fmt: skip
    from vision_jax.train import parallel

    mesh = parallel.make_mesh()
    batch = parallel.global_batch(full_size.synthetic_batch(train_step, np.random.default_rng(0)), mesh)
    state = train_step.concrete_state()
    start = time.perf_counter()
    compiled = train_step.step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    device = jax.devices()[0]
    flops = full_size.flops_of(compiled)
    peak = peak_tflops(device.device_kind, dtype) if device.platform == "gpu" else None
    stats = device.memory_stats() or {}
    global_batch = int(batch["image"].shape[0])
    return {
        "model": model,
        "config": MODELS[model],
        "dtype": dtype,
        "device": device.device_kind,
        "devices": mesh.size,
        "global_batch": global_batch,
        "image_size": int(train_step.config.data.image_size),
        "step_seconds": seconds,
        "images_per_s": global_batch / seconds,
        "gflop_per_step": flops / 1e9,
        "achieved_tflop_per_s": flops / seconds / 1e12,
        "peak_tflop_per_s": peak,
        "mfu": flops / seconds / (peak * 1e12) if peak else None,
        "peak_memory_bytes": stats.get("peak_bytes_in_use"),
        "compile_seconds": compile_seconds,
        "tiny": tiny,
        "loss": float(np.asarray(metrics["loss"])),
    }


def measure_in_subprocess(model: str, dtype: str, args) -> dict:
    """The row from a fresh process, so that peak_bytes_in_use is this model's alone."""
    command = [sys.executable, os.path.abspath(__file__), "--one", f"{model}:{dtype}", "--devices", str(args.devices),
               "--steps", str(args.steps)] + (["--tiny"] if args.tiny else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    raise RuntimeError(f"{model} {dtype} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


def print_table(rows: list[dict]) -> None:
    print(f"| {'model':<11} | {'dtype':<8} | {'device':<26} | dev | batch | size | step ms | img/s | GFLOP/step | "
          "TFLOP/s | MFU | peak mem GiB |")  # fmt: skip
    print(f"|{'-' * 13}|{'-' * 10}|{'-' * 28}|-----|-------|------|---------|-------|------------|---------|-----|"
          "--------------|")  # fmt: skip
    for r in rows:
        mfu = f"{r['mfu']:.2f}" if r["mfu"] is not None else "—"
        memory = f"{r['peak_memory_bytes'] / 2**30:.1f}" if r["peak_memory_bytes"] else "—"
        print(f"| {r['model']:<11} | {r['dtype']:<8} | {r['device'][:26]:<26} | {r['devices']:>3} | "
              f"{r['global_batch']:>5} | {r['image_size']:>4} | {r['step_seconds'] * 1e3:>7.0f} | "
              f"{r['images_per_s']:>5.1f} | {r['gflop_per_step']:>10.1f} | {r['achieved_tflop_per_s']:>7.2f} | "
              f"{mfu:>3} | {memory:>12} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--devices", type=int, default=full_size.DEFAULT_DEVICES,
                        help="per-device batch = train.batch_size // devices")  # fmt: skip
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and sizes, per-device batch 2")
    parser.add_argument("--in_process", action="store_true", help="all rows in this process (peak memory "
                        "then accumulates over rows)")  # fmt: skip
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # model:dtype, from measure_in_subprocess
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args()
    if args.one:
        model, dtype = args.one.split(":")
        print("ROW " + json.dumps(measure(model, dtype, args.devices, args.steps, args.tiny)))
        return
    models, dtypes = args.models.split(","), args.dtypes.split(",")
    unknown = [m for m in models if m not in MODELS] + [d for d in dtypes if d not in ("bfloat16", "float32")]
    if unknown:
        raise ValueError(f"unknown --models/--dtypes {unknown}; models are {sorted(MODELS)}, dtypes bfloat16, float32")
    print(f"load average before: {full_size.load_average()}; jax {jax.__version__}; devices: {jax.devices()}")
    rows = []
    for model in models:
        for dtype in dtypes:
            row = measure(model, dtype, args.devices, args.steps, args.tiny) if args.in_process else (
                measure_in_subprocess(model, dtype, args))  # fmt: skip
            row["load_1min"] = os.getloadavg()[0]
            rows.append(row)
            print(f"{model} {dtype}: {row['images_per_s']:.1f} img/s, {row['step_seconds'] * 1e3:.0f} ms/step",
                  flush=True)  # fmt: skip
    print()
    print_table(rows)
    print(f"load average after: {full_size.load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

"""Two-stage against one-stage detectors on the same generated shapes: COCO AP and inference speed.

    python scripts/compare_detectors.py [--workdir runs/compare] [--only ssd,yolov3] [--repeats 10]

For each detector of `DETECTORS` (name -> config file), trains the config into `<workdir>/<name>`
with the one train loop (a workdir that already holds the finished run is only evaluated: the loop
resumes from its last checkpoint), evaluates it on the shapes test split (pycocotools COCOeval), then
times the jitted predict step (forward pass, decoding and NMS) of the trained model on test images
at batch 1 and batch 8: median of `repeats` calls after a compile-and-warm-up call. All configs read
the same dataset (shapes 'multi', 128x128, the same 5000 training and 500 test scenes).

Prints one markdown table (the README's comparison table is a copy of it) plus the load average,
because the machine may be shared; training minutes come from each run's metrics.jsonl (logged
images/s: steps x batch over the median interval's speed, so a paused or resumed run is not
charged its idle time), which depend on the load the run was trained under.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import jax
import numpy as np
from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from vision_jax.train import parallel
from vision_jax.train.config import load_config_file
from vision_jax.train.loop import Experiment, train_and_evaluate

from timing import median_seconds

DETECTORS = {
    "faster_rcnn": ("two-stage", "configs/detection/shapes_faster_rcnn.py"),
    "ssd": ("one-stage", "configs/detection/shapes_ssd.py"),
    "yolov3": ("one-stage", "configs/detection/shapes_yolov3.py"),
}
SPEED_BATCHES = (1, 8)


def load_config(path: str):
    config = load_config_file(os.path.join(REPO, path))
    config.train.progress_bar = False
    return config


def images_per_second(exp: Experiment, batch: dict[str, np.ndarray], size: int, repeats: int) -> float:
    """Median throughput of the predict step on the first `size` images of an eval batch."""
    inputs = parallel.global_batch({k: v[:size] for k, v in batch.items()}, exp.mesh)
    variables = exp.state.variables
    return size / median_seconds(lambda: exp.predict_step(variables, inputs), repeats)


def training_minutes(workdir: str, batch_size: int) -> tuple[int, float]:
    """(last step, minutes of training) from metrics.jsonl: last step x batch over the median of the
    logged intervals' images/s. The median, not the sum of the intervals: an interval in which the
    run was paused or stopped and resumed later would count the idle time (evaluation,
    checkpointing and compilation are left out the same way)."""
    last_step, speeds = 0, []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == "train" and record["step"] > last_step:
                speeds.append(record["images_per_second"])
                last_step = record["step"]
    return last_step, last_step * batch_size / statistics.median(speeds) / 60.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs/compare"))
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(DETECTORS))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    names = [n for n in args.only.split(",") if n] or list(DETECTORS)
    unknown = sorted(set(names) - set(DETECTORS))
    if unknown:
        raise SystemExit(f"--only: unknown detectors {unknown}; known: {sorted(DETECTORS)}")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; jax {jax.__version__}")

    rows = []
    for name in names:
        family, config_path = DETECTORS[name]
        config = load_config(config_path)
        workdir = os.path.join(args.workdir, name)
        results = train_and_evaluate(config, workdir)
        if not results:
            raise SystemExit(f"{name}: stopped by SIGTERM before its last step; run the same command to resume")
        exp = Experiment(config, workdir)
        batch = next(iter(exp.eval_batches()))
        speeds = [images_per_second(exp, batch, size, args.repeats) for size in SPEED_BATCHES]
        steps, minutes = training_minutes(workdir, config.train.batch_size)
        rows.append((name, family, config_path, results, speeds, steps, minutes))

    print("\nshapes 'multi' test split (500 scenes, 128x128, 5 classes); COCO metrics by pycocotools;")
    print(f"inference = jitted predict step (forward, decoding, NMS), median of {args.repeats} calls")
    print("| detector | family | config | AP | AP50 | AP75 | img/s batch 1 | img/s batch 8 | train steps | train min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, family, config_path, r, speeds, steps, minutes in rows:
        print(
            f"| {name} | {family} | {os.path.basename(config_path)} | {r['AP']:.3f} | {r['AP50']:.3f} | "
            f"{r['AP75']:.3f} | {speeds[0]:.1f} | {speeds[1]:.1f} | {steps} | {minutes:.1f} |"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Input throughput: each task's tf.data pipeline alone against the train step it feeds, in images/s.

    python scripts/benchmark_inputs.py [--batches 10] [--steps 3] [--shapes_examples 512]
        [--coco_examples 64] [--no_shapes] [--no_coco] [--only SUBSTRING] [--json PATH]

Shapes rows (one per task): the real config (fashion_mnist_resnet18 for classification, the local
Fashion-MNIST copy; shapes_* for the others, on a freshly generated shapes dataset of
--shapes_examples training images) run through the loop's own pieces (`train.loop.Experiment`):
`data.pipeline.train_batches` with the task's training preprocessing, as `scripts/train.py` feeds it,
timed over --batches batches after two warm-up batches (tracing, first reads); then the loop's train
step (`make_train_step`, compiled, on a batch of that pipeline), the median of --steps steps. The
ratio pipeline / step must be >= 2: the pipeline (which shares the host's cores with the step) then
never makes the step wait.

COCO-size rows: the full-size COCO detection configs' training preprocessing (Faster R-CNN's
800-1333 resize and 1344² canvas, SSD512's photometric/expand/crop augmentation, YOLOv3's) on tfds mock
data (`tfds.testing.mock_data`) whose tiny images are replaced by COCO-size JPEGs (640x480, smooth
random content), decoded in the pipeline as tfds decodes COCO's; images/s of the pipeline alone, also
per CPU core. There is no step column: on this CPU a full-size step takes tens of seconds (the
pipeline wins by orders of magnitude); the rate to compare with is a GPU's (scripts/benchmark_gpu.py),
and the per-core rate says how many host cores that needs.
The machine is shared: the 1-minute load average is printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import numpy as np

import full_size
from vision_jax.data import datasets, pipeline
from vision_jax.tasks import get_task
from vision_jax.train import parallel
from vision_jax.train.config import load_config_file
from vision_jax.train.loop import Experiment
from vision_jax.train.steps import make_train_step

SHAPES_CASES = (
    ("classification", "configs/classification/fashion_mnist_resnet18.py"),
    ("localization", "configs/localization/shapes_resnet18.py"),
    ("detection", "configs/detection/shapes_faster_rcnn.py"),
    ("detection", "configs/detection/shapes_ssd.py"),
    ("detection", "configs/detection/shapes_yolov3.py"),
    ("segmentation", "configs/segmentation/shapes_fcn8s.py"),
)
COCO_CASES = (
    "configs/detection/faster_rcnn_R50_FPN.py",
    "configs/detection/ssd512_vgg16_coco.py",
    "configs/detection/yolov3_darknet53_coco.py",
)
COCO_IMAGE_SIZE = (480, 640)  # (height, width): COCO's most common size


def pipeline_images_per_second(batches, batch_size: int, count: int) -> tuple[float, dict]:
    """Images/s over `count` batches of the iterator after two warm-up batches; also the first batch."""
    first = next(batches)
    next(batches)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    return count * batch_size / (time.perf_counter() - start), first


def step_images_per_second(exp: Experiment, batch: dict, steps: int) -> float:
    step = make_train_step(exp.task, exp.model, exp.tx, exp.mesh, exp.schedule)
    batch = parallel.global_batch(batch, exp.mesh)
    state = jax.block_until_ready(step(exp.state, batch)[0])  # compiles
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return exp.config.train.batch_size / statistics.median(times)


def shapes_row(task: str, path: str, args, scratch: str) -> dict:
    config = load_config_file(os.path.join(full_size.REPO, path))
    if config.data.name == "shapes":
        config.data.data_dir = os.path.join(scratch, "shapes")
        config.data.shapes_num_train, config.data.shapes_num_test = args.shapes_examples, 16
    exp = Experiment(config, os.path.join(scratch, full_size.short_name(path)))
    batch_size = config.train.batch_size
    batches = pipeline.train_batches(exp.train_ds, exp.task.preprocess(exp.info, True), batch_size=batch_size,
                                     seed=config.seed, cache=config.data.cache)  # fmt: skip
    pipeline_rate, first = pipeline_images_per_second(batches, batch_size, args.batches)
    load_pipeline = os.getloadavg()[0]
    step_rate = step_images_per_second(exp, first, args.steps)
    exp.manager.close()
    return {"task": task, "config": path, "batch": batch_size, "image_size": int(config.data.image_size),
            "pipeline_images_per_s": pipeline_rate, "step_images_per_s": step_rate,
            "pipeline_over_step": pipeline_rate / step_rate, "load_1min_pipeline": load_pipeline,
            "load_1min_step": os.getloadavg()[0]}  # fmt: skip


def coco_size_dataset(ds, count: int, seed: int = 0):
    """The mock dataset with each image replaced by one of `count` COCO-size JPEGs (decoded here, as
    tfds decodes COCO's) and its boxes scaled from the mock image to the new size."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    height, width = COCO_IMAGE_SIZE
    jpegs = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (1, height // 16, width // 16, 3)).astype(np.float32)
        smooth = tf.image.resize(coarse, (height, width), "bicubic")[0] + rng.normal(0, 4, (height, width, 3))
        jpegs.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(smooth, 0, 255), tf.uint8), quality=90))
    jpegs = tf.stack(jpegs)

    def enlarge(example):
        old = tf.cast(tf.shape(example["image"])[:2], tf.float32)
        image = tf.io.decode_jpeg(jpegs[tf.cast(example["image_id"] % count, tf.int32)], channels=3)
        scale = tf.stack([width / old[1], height / old[0], width / old[1], height / old[0]])
        return {**example, "image": image, "boxes": example["boxes"] * scale}

    return ds.map(enlarge)


def coco_row(path: str, args) -> dict:
    import tensorflow_datasets as tfds

    config = load_config_file(os.path.join(full_size.REPO, path))
    batch_size = max(1, config.train.batch_size // full_size.DEFAULT_DEVICES)
    with tfds.testing.mock_data(num_examples=args.coco_examples):
        ds, info = datasets.load(config.data, config.data.train_split)
        ds = coco_size_dataset(ds.cache(), count=min(16, args.coco_examples))
        batches = pipeline.train_batches(ds, get_task(config).preprocess(info, True), batch_size=batch_size,
                                         seed=config.seed, num_examples=args.coco_examples)  # fmt: skip
        rate, _ = pipeline_images_per_second(batches, batch_size, args.batches)
    cores = os.cpu_count()
    return {"task": "detection, COCO size", "config": path, "batch": batch_size,
            "image_size": int(config.data.image_size), "pipeline_images_per_s": rate,
            "pipeline_images_per_s_per_core": rate / cores, "cores": cores, "load_1min_pipeline": os.getloadavg()[0]}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10, help="timed batches of each pipeline")
    parser.add_argument("--steps", type=int, default=3, help="timed train steps (median)")
    parser.add_argument("--shapes_examples", type=int, default=2048, help="generated shapes training images (an "
                        "epoch must outlast the timed batches: the loop rebuilds, and retraces, a pipeline per epoch "
                        "of a small dataset)")  # fmt: skip
    parser.add_argument("--only", default="", help="only the rows whose config path contains this")
    parser.add_argument("--coco_examples", type=int, default=64, help="mock COCO examples (16 distinct images)")
    parser.add_argument("--no_shapes", action="store_true")
    parser.add_argument("--no_coco", action="store_true")
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args()
    result = {"load_average_before": full_size.load_average(), "shapes": [], "coco_size": []}
    print(f"load average before: {result['load_average_before']}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch:
        if not args.no_shapes:
            print("\n| task           | config                                            | batch | pipeline img/s | "
                  "step img/s | pipeline / step | load |")  # fmt: skip
            print("|----------------|---------------------------------------------------|-------|----------------|"
                  "------------|-----------------|------|")  # fmt: skip
            for task, path in [case for case in SHAPES_CASES if args.only in case[1]]:
                r = shapes_row(task, path, args, scratch)
                result["shapes"].append(r)
                print(f"| {task:<14} | {path:<49} | {r['batch']:>5} | {r['pipeline_images_per_s']:>14.1f} | "
                      f"{r['step_images_per_s']:>10.1f} | {r['pipeline_over_step']:>15.1f} | "
                      f"{r['load_1min_step']:>4.1f} |", flush=True)  # fmt: skip
    if not args.no_coco:
        print(f"\nCOCO-size training preprocessing ({COCO_IMAGE_SIZE[1]}x{COCO_IMAGE_SIZE[0]} JPEGs decoded in the "
              "pipeline), pipeline alone")  # fmt: skip
        print("| config                                      | canvas | batch | pipeline img/s | img/s per core | load |")
        print("|---------------------------------------------|--------|-------|----------------|----------------|------|")
        for path in [path for path in COCO_CASES if args.only in path]:
            r = coco_row(path, args)
            result["coco_size"].append(r)
            print(f"| {path:<43} | {r['image_size']:>6} | {r['batch']:>5} | {r['pipeline_images_per_s']:>14.1f} | "
                  f"{r['pipeline_images_per_s_per_core']:>14.1f} | {r['load_1min_pipeline']:>4.1f} |", flush=True)  # fmt: skip
    result["load_average_after"] = full_size.load_average()
    print(f"load average after: {result['load_average_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

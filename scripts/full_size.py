"""The full-size configs' train steps, built without data: shared by benchmark_compile.py, memory_table.py
and benchmark_gpu.py (imported as `full_size`: scripts/ is on sys.path when one of them runs).

A full-size config is any file in configs/ that is not a shapes_*, fashion_mnist_* or small_* toy. Its
batch layout (names, shapes, dtypes) is the task's preprocessing output on tfds mock data
(`tfds.testing.mock_data`, no download), except mask_rcnn_R50_FPN (a coco_json folder, which tfds cannot
mock), whose layout is written out as tests/test_configs.py does. The train step is the loop's own
(`vision_jax.train.steps.make_train_step`), lowered on abstract arrays (`jax.ShapeDtypeStruct`), so
compiling it allocates no batch or weights.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from vision_jax.data import datasets
from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.tasks import get_task
from vision_jax.train import parallel
from vision_jax.train.config import load_config_file
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.state import create_train_state
from vision_jax.train.steps import make_train_step

TOY_PREFIXES = ("shapes_", "fashion_mnist", "small")
# A GPU host of the recipes these configs copy (detectron2: 16 images = 8 GPUs x 2; ResNet-50: 1024 = 8 x 128).
DEFAULT_DEVICES = 8


def full_size_configs(task: str | None = None) -> list[str]:
    """Repository-relative paths of the full-size configs, sorted; only `task`'s folder when given."""
    paths = sorted(glob.glob(os.path.join(REPO, "configs", task or "*", "*.py")))
    return [os.path.relpath(p, REPO) for p in paths if not os.path.basename(p).startswith(TOY_PREFIXES)]


def short_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _mask_rcnn_layout(config) -> tuple[DatasetInfo, dict]:
    """The detection pipeline's documented output (data/detection_inputs.py) at the config's sizes."""
    info = DatasetInfo(name="coco_json", num_classes=80, class_names=tuple(f"c{i}" for i in range(80)),
                       num_examples={"train": 2}, image_shape=None, has=frozenset({"boxes", "masks"}))  # fmt: skip
    side, m = config.data.image_size, config.data.max_instances
    mask_side = config.data.mask_size or side
    layout = {"image": ((side, side, 3), np.float32), "boxes": ((m, 4), np.float32), "classes": ((m,), np.int32),
              "valid": ((m,), np.bool_), "is_crowd": ((m,), np.bool_),
              "masks": ((m, mask_side, mask_side), np.uint8), "image_info": ((4,), np.float32),
              "image_id": ((), np.int32)}  # fmt: skip
    return info, {k: (shape, np.dtype(dtype)) for k, (shape, dtype) in layout.items()}


def example_layout(config) -> tuple[DatasetInfo, dict[str, tuple[tuple[int, ...], np.dtype]]]:
    """(dataset info, {name: (per-example shape, numpy dtype)}) of one preprocessed training example."""
    if config.data.name == "coco_json":
        return _mask_rcnn_layout(config)
    import tensorflow as tf
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=2):
        ds, info = datasets.load(config.data, config.data.train_split)
        preprocess = get_task(config).preprocess(info, True)
        spec = ds.map(lambda ex: preprocess(ex, tf.constant([0, 0], tf.int64))).element_spec
    return info, {k: (tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype)) for k, s in spec.items()}


def synthetic_batch(train_step: "TrainStep", rng: np.random.Generator, num_objects: int = 20) -> dict[str, np.ndarray]:
    """A random batch in the step's layout: images N(0, 1); `num_objects` (at most the slots) valid
    ground-truth boxes per image (1/16 to 1/2 of the side, inside the canvas) of random classes, with
    box-shaped masks; random labels and segmentation classes. Every other field (ids, counters) is zero."""
    info, layout = train_step.info, train_step.layout
    b = train_step.batch["image"].shape[0]
    batch = {k: np.zeros((b, *shape), dtype) for k, (shape, dtype) in layout.items()}
    side = layout["image"][0][0]
    batch["image"] = rng.normal(size=batch["image"].shape).astype(layout["image"][1])
    batch["example_valid"][:] = True
    if "label" in batch:
        batch["label"][:] = rng.integers(0, info.num_classes, b)
    if "segmentation" in batch:
        batch["segmentation"][:] = rng.integers(0, len(info.segmentation_class_names), batch["segmentation"].shape)
    if "boxes" in batch:
        count = min(num_objects, batch["boxes"].shape[1])
        centre = rng.uniform(0.25 * side, 0.75 * side, (b, count, 2))
        half = rng.uniform(side / 32, side / 4, (b, count, 2))
        batch["boxes"][:, :count] = np.clip(np.concatenate([centre - half, centre + half], -1), 0, side)
        batch["classes"][:, :count] = rng.integers(0, info.num_classes, (b, count))
        batch["valid"][:, :count] = True
        batch["image_info"][:] = np.array([side, side, 1.0, 1.0], np.float32)
    if "masks" in batch:
        mask_side = batch["masks"].shape[-1]
        grid = (np.arange(mask_side) + 0.5) * side / mask_side  # mask pixel centres in canvas pixels
        boxes = batch["boxes"][..., None, :]
        inside_x = (grid >= boxes[..., 0]) & (grid < boxes[..., 2])  # [b, slots, mask_side]
        inside_y = (grid >= boxes[..., 1]) & (grid < boxes[..., 3])
        batch["masks"][:] = inside_y[..., :, None] & inside_x[..., None, :]
    return batch

@dataclasses.dataclass
class TrainStep:
    """A config's train step on one device, ready to lower: `step.lower(state, batch)` (abstract)."""

    path: str
    config: object
    info: DatasetInfo
    task: object
    model: object
    tx: object
    step: object
    state: object  # a TrainState of ShapeDtypeStructs (or of arrays, from `concrete_state`)
    batch: dict  # name -> ShapeDtypeStruct [per_device_batch * devices, ...]
    layout: dict
    per_device_batch: int

    def concrete_state(self, seed: int = 0):
        """A real, randomly initialised state on this process's devices (for running the step)."""
        tx, _ = build_optimizer(self.config.optimizer, self.config.train.num_steps)
        state = create_train_state(self.model, self.task.init_inputs(self.info), tx, seed=seed)
        return parallel.replicate(state, parallel.make_mesh())


def build_train_step(path: str, per_device_batch: int | None = None, devices: int = DEFAULT_DEVICES,
                     overrides: dict | None = None) -> TrainStep:
    """The config's train step at `per_device_batch` images per device (default: train.batch_size //
    devices, at least 1) on a mesh of this process' devices (the batch is per_device_batch x their
    number; one on a CPU). `overrides`: dotted config keys -> values."""
    config = load_config_file(os.path.join(REPO, path))
    for key, value in (overrides or {}).items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    if per_device_batch is None:
        per_device_batch = max(1, config.train.batch_size // devices)
    info, layout = example_layout(config)
    task = get_task(config)
    model = task.build_model(info)
    mesh = parallel.make_mesh()
    tx, schedule = build_optimizer(config.optimizer, config.train.num_steps)
    state = jax.eval_shape(lambda: create_train_state(model, task.init_inputs(info), tx, seed=0))
    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), state)
    layout = {**layout, "example_valid": ((), np.dtype(np.bool_))}
    batch = {k: jax.ShapeDtypeStruct((per_device_batch * mesh.size, *shape), dtype, sharding=sharded)
             for k, (shape, dtype) in layout.items()}  # fmt: skip
    step = make_train_step(task, model, tx, mesh, schedule)
    return TrainStep(path, config, info, task, model, tx, step, state, batch, layout, per_device_batch)


def compile_step(train_step: TrainStep):
    """(compiled step, seconds to lower + compile)."""
    start = time.perf_counter()
    compiled = train_step.step.lower(train_step.state, train_step.batch).compile()
    return compiled, time.perf_counter() - start


def flops_of(compiled) -> float:
    """XLA's floating-point operation count of one call of the compiled step (0 when not reported)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def memory_of(compiled) -> dict[str, int]:
    """Bytes of the compiled step from XLA's memory analysis: arguments, outputs, temporaries, generated
    code, and the aliased (donated) bytes that outputs reuse from the arguments. `total` counts what is
    live at once at worst: arguments + outputs - aliased + temporaries."""
    m = compiled.memory_analysis()
    row = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
        "code_bytes": int(m.generated_code_size_in_bytes),
    }
    row["total_bytes"] = row["argument_bytes"] + row["output_bytes"] - row["alias_bytes"] + row["temp_bytes"]
    return row


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"

"""Memory of Mask R-CNN at COCO size (issue 12, acceptance e): the input pipeline's host bytes per
image, and the compiled train step's device memory (XLA's memory analysis).

    PYTHONPATH=. python tests/detection/mask_rcnn_memory.py [--config configs/detection/mask_rcnn_R50_FPN.py]
        [--per_device_batch 2]

`example_bytes` is used by tests/detection/test_mask_rcnn_memory.py on the real pipeline; the
compile (minutes on a CPU) is run by hand, and its numbers are in the config's docstring.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.tasks import get_task
from vision_jax.train.config import load_config_file, validate
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.state import create_train_state
from vision_jax.train import parallel
from vision_jax.train.steps import make_train_step

MIB = 2**20


def example_bytes(example: dict) -> dict[str, int]:
    """Bytes of each array of one preprocessed example (what a batch holds per image on the host)."""
    return {key: int(np.asarray(value).nbytes) for key, value in example.items()}


def coco_info(num_classes: int = 80) -> DatasetInfo:
    return DatasetInfo(name="coco_json", num_classes=num_classes, class_names=tuple(f"c{i}" for i in range(num_classes)),
                       num_examples={"train": 2}, image_shape=None, has=frozenset({"boxes", "masks"}))  # fmt: skip


def training_batch_spec(config, per_device_batch: int) -> dict:
    """The detection pipeline's training batch (data/detection_inputs.py) as ShapeDtypeStructs."""
    side, m, crop = config.data.image_size, config.data.max_instances, config.data.mask_crop_size
    shapes = {"image": ((side, side, 3), np.float32), "boxes": ((m, 4), np.float32), "classes": ((m,), np.int32),
              "valid": ((m,), np.bool_), "is_crowd": ((m,), np.bool_), "box_masks": ((m, crop, crop), np.uint8),
              "image_info": ((4,), np.float32), "image_id": ((), np.int32), "example_valid": ((), np.bool_),
              "dropped_degenerate_boxes": ((), np.int32), "dropped_excess_instances": ((), np.int32)}  # fmt: skip
    return {k: jax.ShapeDtypeStruct((per_device_batch, *shape), dtype) for k, (shape, dtype) in shapes.items()}


def train_step_memory(config, per_device_batch: int) -> dict[str, float]:
    """MiB of the compiled train step on one device: arguments, outputs, temporaries (XLA's analysis)."""
    validate(config)
    task = get_task(config)
    model = task.build_model(coco_info())
    tx, schedule = build_optimizer(config.optimizer, config.train.num_steps)
    state = jax.eval_shape(lambda: create_train_state(model, task.init_inputs(coco_info()), tx, seed=0))
    mesh = parallel.make_mesh()
    step = make_train_step(task, model, tx, mesh, schedule)
    start = time.perf_counter()
    compiled = step.lower(state, training_batch_spec(config, per_device_batch * jax.device_count())).compile()
    analysis = compiled.memory_analysis()
    return {
        "compile_seconds": time.perf_counter() - start,
        "arguments_mib": analysis.argument_size_in_bytes / MIB,
        "outputs_mib": analysis.output_size_in_bytes / MIB,
        "temporaries_mib": analysis.temp_size_in_bytes / MIB,
        "aliased_mib": analysis.alias_size_in_bytes / MIB,
        "generated_code_mib": analysis.generated_code_size_in_bytes / MIB,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/detection/mask_rcnn_R50_FPN.py")
    parser.add_argument("--per_device_batch", type=int, default=2)
    args = parser.parse_args()
    config = load_config_file(args.config)
    print(f"{args.config}, {args.per_device_batch} images per device, {jax.devices()[0].platform}:")
    for key, value in train_step_memory(config, args.per_device_batch).items():
        print(f"  {key}: {value:.1f}")


if __name__ == "__main__":
    main()

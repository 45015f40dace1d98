"""SSD (ResNet variant) trained by the one train loop on a few generated scenes overfits them to
COCO AP50 >= 0.95, measured by pycocotools through the detection task's evaluator."""

import json
import os

import pytest

from vision_jax.train import loop
from vision_jax.train.config import base_config

NUM_IMAGES, BATCH, STEPS = 4, 2, 100


def overfit_config(data_dir: str):
    c = base_config("detection", model="ssd")
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", data_dir
    c.data.shapes_num_train, c.data.shapes_num_test = NUM_IMAGES, 1
    c.data.eval_split = "train"  # overfitting: evaluated on the training images
    c.data.image_size, c.data.fixed_size = 64, True  # the 128 x 128 scenes at half size: objects 6-26 px
    c.data.random_flip, c.data.max_instances = False, 8
    c.model.backbone, c.model.width = "resnet18", 8
    s = c.model.ssd
    s.resnet_sources = ("C3", "C4", "C5")  # 8x8, 4x4, 2x2
    s.extras = ((32, 64, 3, 2, 1),)  # 1x1
    s.aspect_ratios = ((2,), (2,), (2,), (2,))
    s.scales, s.steps, s.l2norm = (0.12, 0.25, 0.45, 0.7, 0.9), (), False
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = STEPS, BATCH, NUM_IMAGES
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, STEPS, STEPS
    c.train.num_pictures, c.train.progress_bar = 0, False
    return c


@pytest.mark.slow
def test_ssd_overfits_a_few_scenes_to_ap50(tmp_path):
    config = overfit_config(str(tmp_path / "tfds"))
    results = loop.train_and_evaluate(config, str(tmp_path / "run"))
    with open(os.path.join(tmp_path / "run", "metrics.jsonl")) as f:
        train_logs = [json.loads(line) for line in f if '"train"' in line]
    print(f"after {STEPS} steps on {NUM_IMAGES} images: {results}; last train log {train_logs[-1]}")
    assert train_logs[-1]["loss"] < train_logs[0]["loss"] / 3, f"the loss must fall: {train_logs}"
    assert results["AP50"] >= 0.95, f"AP50={results['AP50']:.3f} after {STEPS} steps on {NUM_IMAGES} images: {results}"

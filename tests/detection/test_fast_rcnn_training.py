"""Fast R-CNN trained by the one train loop on selective-search proposals it computes and caches itself:
a few shapes scenes are overfitted to pycocotools AP50 (the whole path: proposals -> pipeline ->
sampling -> loss -> inference on given proposals -> evaluator), and a user's own COCO-format folder
trains with only data.name and data.root changed in configs/detection/shapes_fast_rcnn.py
(issue 11, acceptance e)."""

import os

import numpy as np
import pytest
from command_line import command_line_config
from test_detection_own_data import write_scenes

from vision_jax.train import loop
from vision_jax.train.config import base_config

NUM_IMAGES, BATCH, STEPS = 4, 2, 150


def overfit_config(data_dir: str):
    c = base_config("detection", model="fast_rcnn")
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", data_dir
    c.data.shapes_num_train, c.data.shapes_num_test = NUM_IMAGES, 1
    c.data.eval_split = "train"  # overfitting: evaluated on the training images
    c.data.image_size = c.data.min_size = c.data.max_size = 64  # the 128 x 128 scenes at half size
    c.data.random_flip, c.data.max_instances = False, 8
    c.data.proposals, c.data.max_proposals, c.data.proposal_workers = "selective_search", 256, 1
    c.model.backbone, c.model.width = "resnet18", 8
    c.model.fast_rcnn.feature_map = "C3"  # stride 8: an 8 x 8 map for the 64 px canvas
    c.model.fast_rcnn.box_head_fc_dim = 128
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = STEPS, BATCH, NUM_IMAGES
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, STEPS, STEPS
    c.train.num_pictures, c.train.progress_bar = 1, False
    return c


def test_overfits_a_few_scenes_on_its_own_cached_proposals(tmp_path, monkeypatch, seed):
    monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
    config = overfit_config(str(tmp_path / "tfds"))
    config.seed = seed
    results = loop.train_and_evaluate(config, str(tmp_path / "run"))
    print(f"seed={seed}: {results}")
    assert results["AP50"] >= 0.9, f"seed={seed}: {results}"
    cached = os.listdir(tmp_path / "cache" / "proposals")
    assert len(cached) == 1 and cached[0].startswith("shapes-train-"), cached  # train = eval split: one file


# Speed overrides only (nothing about the dataset): a 64 px canvas, a narrow net, few steps.
FAST = [
    "--config.data.image_size=64",
    "--config.data.min_size=64",
    "--config.data.max_size=64",
    "--config.data.random_flip=False",
    "--config.data.max_proposals=256",
    "--config.model.width=8",
    "--config.model.fast_rcnn.feature_map=C3",
    "--config.model.fast_rcnn.box_head_fc_dim=128",
    "--config.optimizer.learning_rate=0.003",
    "--config.optimizer.warmup_steps=20",
    "--config.train.num_steps=150",
    "--config.train.batch_size=2",
    "--config.train.eval_batch_size=4",
    "--config.train.log_every=50",
    "--config.train.eval_every=1000",
    "--config.train.checkpoint_every=1000",
    "--config.train.num_pictures=1",
    "--config.train.progress_bar=False",
]


@pytest.mark.slow
def test_own_coco_json_folder_trains_with_only_name_and_root(repo_root, tmp_path, monkeypatch, seed):
    monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))  # the default cache folder, moved
    root = tmp_path / "my_coco"
    write_scenes(root, "train", np.random.default_rng(seed), [3, 8, 13, 21])
    write_scenes(root, "val", np.random.default_rng(seed), [3, 8, 13, 21])
    config = command_line_config(repo_root, "configs/detection/shapes_fast_rcnn.py", "--config.data.name=coco_json",
                                 f"--config.data.root={root}", *FAST)
    results = loop.train_and_evaluate(config, str(tmp_path / "run"))
    print(f"seed={seed}: {results}")
    assert results["AP50"] >= 0.9, f"seed={seed}: {results}"
    cached = sorted(os.listdir(tmp_path / "cache" / "proposals"))
    # One cache file per split as the config names it (eval_split 'test', read from val.json).
    assert [name.split("-")[:2] for name in cached] == [["coco_json", "test"], ["coco_json", "train"]], cached

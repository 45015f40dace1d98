"""Issue 15, item 6: a shared config run on a small folder of one's own. Batch sizes larger than the
splits and a warmup as long as the run are fitted (and logged) before the model is built, and the
README's promise holds: a 16-image image_folder trains end to end with the classification config and
nothing but the data name and root (plus a shorter run, for this machine's sake)."""
from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np
import pytest
from command_line import command_line_config
from PIL import Image

from vision_jax.data import datasets, small_data

CONFIG = "configs/classification/fashion_mnist_resnet18.py"  # batch 128, eval batch 500, warmup 200


def write_small_folder(root, rng, num_train_per_class: int = 6, num_val_per_class: int = 2) -> None:
    """root/{train,val}/{circle,square}/*.jpg|png: 16 images by default, a bright shape on noise."""
    for split, count in (("train", num_train_per_class), ("val", num_val_per_class)):
        for class_name in ("circle", "square"):
            os.makedirs(root / split / class_name)
            for i in range(count):
                size = int(rng.integers(24, 48))
                pixels = rng.normal(60, 20, (size, size, 3))
                y, x = np.mgrid[:size, :size] - size / 2
                shape = (x**2 + y**2 < (size / 3) ** 2) if class_name == "circle" else (np.maximum(abs(x), abs(y)) < size / 3)
                pixels[shape] = (230, 200, 40)
                extension = [".jpg", ".png"][i % 2]
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / split / class_name / f"{i:02d}{extension}")


def load_train(config):
    return datasets.load(config.data, config.data.train_split)


def test_batch_sizes_and_warmup_that_do_not_fit_are_set_and_logged(repo_root, tmp_path, rng, seed, caplog):
    num_train, num_val = int(rng.integers(2, 9)), int(rng.integers(1, 4))  # per class
    write_small_folder(tmp_path, rng, num_train, num_val)
    num_steps = int(rng.integers(1, 200))
    config = command_line_config(repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={tmp_path}",
                                 f"--config.train.num_steps={num_steps}")
    train_ds, info = load_train(config)
    with caplog.at_level(logging.WARNING, logger="vision_jax.data.small_data"):
        changes = small_data.fit_config_to_data(config, train_ds, info, device_count=1, process_count=1)
    assert (config.train.batch_size, config.train.eval_batch_size) == (2 * num_train, 2 * num_val), f"seed={seed}"
    assert config.optimizer.warmup_steps == num_steps // 10, f"seed={seed}"
    assert changes == [r.getMessage() for r in caplog.records if r.name == "vision_jax.data.small_data"]
    assert changes == [
        f"config.train.batch_size=128 is larger than the {2 * num_train} examples of the training split 'train' of "
        f"image_folder, so no batch could be filled; using train.batch_size={2 * num_train}, the most that 1 device(s) "
        "and 1 process(es) can fill (set --config.train.batch_size to choose another)",
        f"config.train.eval_batch_size=500 is larger than the {2 * num_val} examples of the evaluation split 'test', "
        f"so most of each batch would be padding; using train.eval_batch_size={2 * num_val}, the split rounded up to a "
        "multiple of the 1 device(s) (set --config.train.eval_batch_size to choose another)",
        f"config.optimizer.warmup_steps=200 is not shorter than the run (train.num_steps={num_steps}), so the learning "
        f"rate would never reach its peak; using optimizer.warmup_steps={num_steps // 10}, a tenth of the run "
        "(set --config.optimizer.warmup_steps to choose another)",
    ], f"seed={seed}"
    # Fitting a fitted config changes nothing.
    assert small_data.fit_config_to_data(config, train_ds, info, device_count=1, process_count=1) == []


@pytest.mark.parametrize("device_count, process_count", [(8, 1), (8, 2), (4, 4)])
def test_fitted_batches_divide_over_devices_and_processes(device_count, process_count, repo_root, tmp_path, rng, seed):
    num_train, num_val = int(rng.integers(4, 13)), int(rng.integers(1, 6))
    write_small_folder(tmp_path, rng, num_train, num_val)
    config = command_line_config(repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={tmp_path}")
    train_ds, info = load_train(config)
    small_data.fit_config_to_data(config, train_ds, info, device_count=device_count, process_count=process_count)
    batch, eval_batch = config.train.batch_size, config.train.eval_batch_size
    assert batch % device_count == 0 and eval_batch % device_count == 0, f"seed={seed}"
    # Every process's shard (sizes differ by at most one) fills its part of a batch; one more device's
    # worth would not fit.
    assert batch // process_count <= (2 * num_train) // process_count < (batch + device_count) // process_count, f"seed={seed}"
    assert eval_batch - device_count < 2 * num_val <= eval_batch, f"seed={seed}"
    assert config.optimizer.warmup_steps == 200  # shorter than the run: kept


def test_fewer_training_images_than_devices_is_refused_with_what_to_do(repo_root, tmp_path, rng):
    write_small_folder(tmp_path, rng, 1, 1)
    config = command_line_config(repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={tmp_path}")
    train_ds, info = load_train(config)
    with pytest.raises(ValueError, match=r"the training split 'train' of image_folder has 2 example\(s\), fewer than "
                                         r"the 4 devices .*add examples or run on fewer devices"):
        small_data.fit_config_to_data(config, train_ds, info, device_count=4, process_count=1)


def test_values_that_fit_are_left_alone(repo_root, tmp_path, rng):
    write_small_folder(tmp_path, rng, 8, 3)
    config = command_line_config(repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={tmp_path}",
                                 "--config.train.batch_size=16", "--config.train.eval_batch_size=4",
                                 "--config.optimizer.warmup_steps=9", "--config.train.num_steps=10")
    train_ds, info = load_train(config)
    assert small_data.fit_config_to_data(config, train_ds, info, device_count=1, process_count=1) == []
    assert (config.train.batch_size, config.train.eval_batch_size, config.optimizer.warmup_steps) == (16, 4, 9)


def test_a_missing_evaluation_split_is_reported_before_training(repo_root, tmp_path, rng):
    write_small_folder(tmp_path, rng, 2, 1)
    os.rename(tmp_path / "val", tmp_path / "holdout")  # no val/validation/test folder to stand in for 'test'
    config = command_line_config(repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={tmp_path}")
    train_ds, info = load_train(config)
    with pytest.raises(ValueError, match=r"image_folder: split 'test' not found in .*; available splits: \['holdout', 'train'\]"):
        small_data.fit_config_to_data(config, train_ds, info, device_count=1, process_count=1)


def test_a_16_image_folder_trains_end_to_end_with_only_name_and_root(repo_root, tmp_path, rng, seed, caplog):
    """The README's own-data promise, as the issue's user ran it: the shared classification config, the
    data name and root, and a shorter run (speed only: batch size, eval batch and warmup are the
    config's 128, 500 and 200). The config's eval split 'test' finds the folder's val/."""
    root = tmp_path / "my_images"
    write_small_folder(root, rng)  # 12 train + 4 val
    config = command_line_config(
        repo_root, CONFIG, "--config.data.name=image_folder", f"--config.data.root={root}",
        "--config.train.num_steps=4", f"--config.seed={seed % 2**31}",
    )
    from vision_jax.train.loop import train_and_evaluate  # local: the data tests need no Flax otherwise

    workdir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        results = train_and_evaluate(config, str(workdir))
    assert 0.0 <= results["accuracy"] <= 1.0, f"seed={seed}: {results}"
    devices = jax.device_count()
    fitted = json.loads((workdir / "config.json").read_text())
    assert fitted["train"]["batch_size"] == 12 // devices * devices, f"seed={seed}"
    assert fitted["train"]["eval_batch_size"] == -(-4 // devices) * devices
    assert fitted["optimizer"]["warmup_steps"] == 0
    assert "config.train.batch_size=128 is larger than the 12 examples" in caplog.text
    assert "split 'test' not found" in caplog.text and "using 'val' instead" in caplog.text
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {(r["step"], r["split"]) for r in rows} == {(4, "train"), (4, "eval")}, rows
    assert all(np.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    assert os.listdir(workdir / "checkpoints")

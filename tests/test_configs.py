"""Every config in configs/ builds its model and traces a train step (jax.eval_shape: no FLOPs).

Full-size configs (ImageNet ResNet-50, COCO detectors, ...) are for GPU hosts; here they are
checked by building and tracing them on tfds mock data (docs/DESIGN.md, "Verification").
"""

import contextlib
import glob
import os

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import ml_collections

from vision_jax.data import datasets
from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.models.settings import config_group
from vision_jax.models.table import MODELS
from vision_jax.tasks import get_task
from vision_jax.train.config import load_config_file, validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True))
LOCAL_DATA = {"shapes", "fashion_mnist_local", "image_folder", "mask_folder", "coco_json"}


def load_config(relative_path):
    return load_config_file(os.path.join(REPO, relative_path))


@pytest.mark.parametrize("path", CONFIGS)
def test_config_docstring_holds_its_command(path):
    text = open(os.path.join(REPO, path)).read()
    assert f"python scripts/train.py --config {path}" in text, f"{path}: docstring must give the exact run command"


@pytest.mark.parametrize("path", CONFIGS)
def test_config_holds_only_its_models_group_with_known_keys(path):
    config = load_config(path)
    spec = MODELS[config.model.name]
    groups = sorted(k for k, v in config.model.items() if isinstance(v, ml_collections.ConfigDict))
    assert groups == [spec.group], f"{path}: config.model holds groups {groups}, expected only {spec.group!r}"
    assert set(config.model[spec.group].keys()) == set(config_group(spec.settings).keys())


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_and_traces_a_train_step(path, tmp_path):
    config = load_config(path)
    validate(config)
    if config.data.name == "shapes":
        config.data.data_dir, config.data.shapes_num_train, config.data.shapes_num_test = str(tmp_path), 8, 8
    elif config.data.name == "fashion_mnist_local" and not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("dataset-fashion-mnist is not installed")
    elif config.data.name in ("image_folder", "mask_folder", "coco_json"):
        pytest.skip(f"{config.data.name} needs a user folder; covered by its own test")
    if config.data.get("proposals"):  # proposals computed for this test stay out of the user's cache
        config.data.proposals_cache_dir = str(tmp_path / "proposals")
    mock = tfds.testing.mock_data(num_examples=2) if config.data.name not in LOCAL_DATA else contextlib.nullcontext()
    with mock:
        ds, info = datasets.load(config.data, config.data.train_split)
        task = get_task(config)
        preprocess = task.preprocess(info, True)
        spec = ds.map(lambda ex: preprocess(ex, tf.constant([0, 0], tf.int64))).element_spec
    model = task.build_model(info)
    init_inputs = task.init_inputs(info)
    if MODELS[config.model.name].trainer:  # a staged model (R-CNN): its CNN's fine-tuning step on the batch
        from vision_jax.models.rcnn.rcnn_finetune import FinetuneTask

        init_inputs = {"crops": np.zeros((1, model.settings.crop_size, model.settings.crop_size, 3), np.float32)}
        task = FinetuneTask(model.settings, info.num_classes, config.data.image_size)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), **init_inputs, train=False))
    per_device = config.train.batch_size // jax.device_count()
    batch = {k: jax.ShapeDtypeStruct((per_device, *s.shape), s.dtype.as_numpy_dtype) for k, s in spec.items()}
    batch["example_valid"] = jax.ShapeDtypeStruct((per_device,), np.bool_)
    loss, (metrics, new_state) = jax.eval_shape(
        lambda v, b: task.loss(model, v, b, jax.random.PRNGKey(0), True), variables, batch
    )
    assert loss.shape == () and all(m.shape == () for m in metrics.values())
    assert jax.tree.structure(new_state) == jax.tree.structure({k: v for k, v in variables.items() if k != "params"})


def test_full_size_mask_rcnn_config_builds_and_traces_a_train_step():
    """mask_rcnn_R50_FPN reads a coco_json folder (tfds' COCO has no masks), which the test above skips;
    here the batch is the detection pipeline's documented output (data/detection_inputs.py) at the
    config's sizes, COCO's 80 classes."""
    config = load_config("configs/detection/mask_rcnn_R50_FPN.py")
    validate(config)
    info = DatasetInfo(name="coco_json", num_classes=80, class_names=tuple(f"c{i}" for i in range(80)),
                       num_examples={"train": 2}, image_shape=None, has=frozenset({"boxes", "masks"}))  # fmt: skip
    task = get_task(config)
    model = task.build_model(info)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), **task.init_inputs(info), train=False))
    b, side, m = config.train.batch_size // jax.device_count(), config.data.image_size, config.data.max_instances
    crop = config.data.mask_crop_size
    shapes = {"image": ((side, side, 3), np.float32), "boxes": ((m, 4), np.float32), "classes": ((m,), np.int32),
              "valid": ((m,), np.bool_), "is_crowd": ((m,), np.bool_),
              "box_masks": ((m, crop, crop), np.uint8), "image_info": ((4,), np.float32),
              "image_id": ((), np.int32), "example_valid": ((), np.bool_)}  # fmt: skip
    batch = {k: jax.ShapeDtypeStruct((b, *shape), dtype) for k, (shape, dtype) in shapes.items()}
    loss_fn = lambda v, x: task.loss(model, v, x, jax.random.PRNGKey(0), True)
    loss, (metrics, _) = jax.eval_shape(loss_fn, variables, batch)
    assert loss.shape == () and "loss_mask" in metrics and metrics["loss_mask"].shape == ()
    predictions = jax.eval_shape(lambda v, x: task.predict(model, v, x), variables, batch)
    k = config.model.rcnn.test_max_detections
    assert predictions["masks"].shape[:2] == (b, k)


def test_load_config_file_returns_get_config_and_names_bad_files(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from vision_jax.train.config import base_config\n"
        "def get_config():\n    c = base_config('classification')\n    c.train.num_steps = 123\n    return c\n"
    )
    config = load_config_file(str(path))
    assert config.task == "classification" and config.train.num_steps == 123
    with pytest.raises(FileNotFoundError, match=r"config file '.*missing\.py' not found"):
        load_config_file(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match=r"config file '.*empty\.py' defines no get_config\(\)"):
        load_config_file(str(tmp_path / "empty.py"))

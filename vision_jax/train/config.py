"""The keys every config shares, and the checks run before training.

A config file in `configs/` starts from `base_config(task, model)` and overrides what differs, so a
user learns the shared keys once (docs/DESIGN.md, "Configs"). The model's own hyper-parameters
are the group `config.model.<family>`, generated from its family's Settings dataclass
(vision_jax.models.table). Values that may be absent are typed placeholders, so that
`--config.data.root=DIR` is type-checked too.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections
from ml_collections import config_dict


def base_config(task: str, model: str | None = None) -> ml_collections.ConfigDict:
    """The shared keys, the keys of `task` (a key of vision_jax.tasks.TASKS) with their defaults
    (the task's `add_config_defaults`), and `config.model.name = model` (None: the task's
    DEFAULT_MODEL) with that model's group of hyper-parameters, every default in place."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "shapes"  # a key of vision_jax.data.datasets' table
    c.data.root = config_dict.placeholder(str)  # own-data folder or local files
    c.data.data_dir = config_dict.placeholder(str)  # tfds data dir (None: tfds default)
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 64  # network input side, pixels
    c.data.cache = True  # keep decoded raw examples in memory (small datasets only)
    c.data.download = True  # tfds catalogue datasets: let tfds download and prepare them

    c.model = ml_collections.ConfigDict()
    c.model.name = ""  # a key of vision_jax.models.table.MODELS, set below
    c.model.backbone = "resnet18"
    c.model.width = 64
    c.model.stem = "imagenet"
    c.model.norm = "batch"  # ResNet: 'frozen' with pretrained weights (detectron2's FrozenBN)
    c.model.frozen_stages = 0  # ResNet: detectron2's FREEZE_AT (2 with pretrained weights)
    c.model.dtype = "float32"  # compute dtype; 'bfloat16' = mixed precision (params stay float32)
    c.model.cross_replica_bn = False  # BatchNorm statistics over all devices ('data' axis)
    c.loss = ml_collections.ConfigDict()  # keys added by the task

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.min_learning_rate = 0.0
    c.optimizer.decay_boundaries = (0.67, 0.89)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 0
    c.optimizer.grad_clip_norm = 0.0

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.batch_size = 64  # global, over all devices and hosts
    c.train.eval_batch_size = 128  # global
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.num_pictures = 8  # eval images drawn with predictions into workdir/pictures
    c.train.progress_bar = True

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False  # call jax.distributed.initialize before anything else
    c.distributed.coordinator_address = config_dict.placeholder(str)  # host:port of process 0
    c.distributed.num_processes = config_dict.placeholder(int)
    c.distributed.process_id = config_dict.placeholder(int)

    from vision_jax.models.table import add_model_group  # local: tasks and models import TF and Flax
    from vision_jax.tasks import TASKS
    from vision_jax.train.initialization import add_init_defaults

    add_init_defaults(c)  # config.init: the weights a fresh run starts from

    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; known: {sorted(TASKS)}")
    TASKS[task].add_config_defaults(c)
    add_model_group(c, model or TASKS[task].DEFAULT_MODEL)
    return c


def shapes_detection_config(model: str, *, fixed_size: bool = False) -> ml_collections.ConfigDict:
    """`base_config("detection", model)` with what every configs/detection/shapes_*.py recipe shares,
    so that each recipe states only what differs: the generated 'multi' scenes at their own size
    (128x128, 1-6 objects, 5 classes: no resizing, flips, 8 instance slots), a ResNet-18 of width 16,
    AdamW (2e-3, weight decay 1e-4, 200 warmup steps, gradients clipped at norm 10), batches of 8
    (50 in evaluation), a log line every 50 steps. `fixed_size=True` (SSD/YOLO) resizes to
    image_size x image_size and leaves min_size/max_size at the task's defaults, which it does not
    read; otherwise (two-stage detectors) the short and the long side are both 128."""
    c = base_config("detection", model=model)
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: the builder's default size (5000)
    c.data.shapes_num_test = config_dict.placeholder(int)  # None: 500
    c.data.image_size = 128  # the scenes' own size: no resizing
    if fixed_size:
        c.data.fixed_size = True
    else:
        c.data.min_size = 128
        c.data.max_size = 128
    c.data.random_flip = True
    c.data.max_instances = 8  # scenes hold at most 6 objects

    c.model.backbone = "resnet18"
    c.model.width = 16  # C3, C4, C5: 32, 64, 128 channels

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 200
    c.optimizer.grad_clip_norm = 10.0

    c.train.batch_size = 8
    c.train.eval_batch_size = 50
    c.train.log_every = 50
    return c


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of the config file at `path` (configs are files, not a package), as
    `--config=path` gives it to scripts/train.py before any override."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"config file {path!r} defines no get_config()")
    return module.get_config()


class ConfigError(ValueError):
    """A config value refused by `validate`; the message names the key. The scripts print it as one
    line (vision_jax.train.cli)."""


def validate(config: ml_collections.ConfigDict) -> None:
    """Refuses values that would otherwise fail deep inside JAX or train silently wrong, raising
    ConfigError with the key in the message."""
    try:
        _validate(config)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _validate(config: ml_collections.ConfigDict) -> None:
    import jax  # local: the config module must stay importable without initialising JAX

    t = config.train
    for key in ("num_steps", "batch_size", "eval_batch_size", "log_every", "eval_every", "checkpoint_every"):
        if int(t[key]) <= 0:
            raise ValueError(f"config.train.{key}={t[key]} must be a positive integer")
    n_devices, n_processes = jax.device_count(), jax.process_count()
    for key in ("batch_size", "eval_batch_size"):
        if t[key] % n_devices:
            raise ValueError(
                f"config.train.{key}={t[key]} is not divisible by the {n_devices} devices "
                f"({n_processes} processes); pick a multiple of {n_devices}"
            )
    from vision_jax.train.initialization import check_init_config

    check_init_config(config.init)
    if config.model.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"config.model.dtype={config.model.dtype!r} must be float32, bfloat16 or float16")
    from vision_jax.models.settings import settings_from_config
    from vision_jax.models.table import model_spec

    spec = model_spec(config)  # the model's group is checked here, before data or model are built
    settings_from_config(spec.settings, config.model.get(spec.group), f"config.model.{spec.group}")
    # Building only constructs the module (no parameters, no data): it refuses what one model of a
    # family cannot use (e.g. faster_rcnn's 5 anchor levels, SSD's sources) before data is loaded.
    spec.build(config, 1)
    if config.optimizer.learning_rate <= 0:
        raise ValueError(f"config.optimizer.learning_rate={config.optimizer.learning_rate} must be > 0")

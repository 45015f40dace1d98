"""The one table from `config.model.name` to code: which task a model serves, the config group of its
family's hyper-parameters (`config.model.<group>`, generated from the Settings dataclass) and the
function that builds it from (config, num_classes).

A config holds the shared backbone keys and the chosen model's group only:
`base_config(task, model=name)` adds `config.model.<group>` from `config_group(spec.settings)`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import flax.linen as nn
import ml_collections

from vision_jax.models import rcnn, segmentation, ssd, yolo
from vision_jax.models.classifier import ClassifierSettings, build_classifier
from vision_jax.models.localizer import LocalizerSettings, build_localizer
from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings
from vision_jax.models.rcnn.region_cnn import build_region_cnn
from vision_jax.models.settings import config_group


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    task: str  # the key of vision_jax.tasks.TASKS the model serves
    group: str  # config.model.<group> holds its hyper-parameters
    settings: type  # the dataclass those keys are generated from
    build: Callable[[ml_collections.ConfigDict, int], nn.Module]  # (config, num_classes) -> module
    # 'module:function' of a staged trainer, (config, workdir) -> final metrics, that scripts/train.py runs
    # instead of the one train loop (R-CNN: proposals, fine-tuning, features, SVMs, box regression,
    # evaluation); None for every model the loop trains. A string: the trainer imports the train package,
    # which imports this table.
    trainer: str | None = None
    # Such a model's module does not follow its task's contract (R-CNN's is a classifier of warped regions),
    # so scripts/evaluate.py and scripts/predict.py --images cannot use the loop's Experiment nor the task's
    # predict: 'module:function' of what they run instead, None for the loop's models.
    #   evaluator: (config, workdir, artifacts_dir) -> (step, metrics) on config.data.eval_split
    #   folder_inference: (config, workdir, model) -> (init_inputs, make_predict), make_predict(variables) ->
    #     predict(host detection batch with proposals) -> host predictions of the task's contract
    evaluator: str | None = None
    folder_inference: str | None = None


_FCN = ModelSpec("segmentation", segmentation.GROUP, segmentation.FCNSettings, segmentation.build_fcn)

MODELS: dict[str, ModelSpec] = {
    "classifier": ModelSpec("classification", "classifier", ClassifierSettings, build_classifier),
    "localizer": ModelSpec("localization", "localizer", LocalizerSettings, build_localizer),
    "faster_rcnn": ModelSpec("detection", rcnn.GROUP, rcnn.RCNNSettings, rcnn.build_faster_rcnn),
    "faster_rcnn_c4": ModelSpec("detection", rcnn.GROUP, rcnn.RCNNSettings, rcnn.build_faster_rcnn_c4),
    "mask_rcnn": ModelSpec("detection", rcnn.GROUP, rcnn.RCNNSettings, rcnn.build_mask_rcnn),
    "mask_rcnn_c4": ModelSpec("detection", rcnn.GROUP, rcnn.RCNNSettings, rcnn.build_mask_rcnn_c4),
    "rcnn": ModelSpec("detection", rcnn.GROUP, RegionCNNSettings, build_region_cnn,
                      trainer="vision_jax.models.rcnn.rcnn_stages:train_rcnn",
                      evaluator="vision_jax.models.rcnn.rcnn_evaluation:evaluate_rcnn",
                      folder_inference="vision_jax.models.rcnn.rcnn_detector:folder_inference"),
    "fast_rcnn": ModelSpec("detection", rcnn.FAST_RCNN_GROUP, rcnn.FastRCNNSettings, rcnn.build_fast_rcnn),
    "sliding_window": ModelSpec(
        "detection", rcnn.SLIDING_WINDOW_GROUP, rcnn.SlidingWindowSettings, rcnn.build_sliding_window
    ),
    "ssd": ModelSpec("detection", ssd.GROUP, ssd.SSDSettings, ssd.build_ssd),
    "yolo_v1": ModelSpec("detection", yolo.GROUP, yolo.YOLOv1Settings, yolo.build_yolo_v1),
    "yolo_v3": ModelSpec("detection", yolo.GROUP, yolo.YOLOv3Settings, yolo.build_yolo_v3),
    "fcn32s": _FCN,
    "fcn16s": _FCN,
    "fcn8s": _FCN,
    "segnet": ModelSpec("segmentation", segmentation.GROUP, segmentation.SegNetSettings, segmentation.build_segnet),
    "conv_autoencoder": ModelSpec(
        "reconstruction", segmentation.GROUP, segmentation.AutoencoderSettings, segmentation.build_autoencoder
    ),
}


def models_of(task: str) -> tuple[str, ...]:
    """The model names that serve `task`, in table order."""
    return tuple(name for name, spec in MODELS.items() if spec.task == task)


def model_spec(config: ml_collections.ConfigDict) -> ModelSpec:
    """The spec of config.model.name, refusing a name that is unknown or serves another task."""
    name = config.model.name
    if name not in MODELS or MODELS[name].task != config.task:
        raise ValueError(
            f"config.model.name={name!r} is not a {config.task} model; known: {list(models_of(config.task))}"
        )
    return MODELS[name]


def add_model_group(config: ml_collections.ConfigDict, name: str) -> None:
    """Sets config.model.name and adds the model's group with every default (base_config)."""
    if name not in MODELS or MODELS[name].task != config.task:
        raise ValueError(f"model={name!r} is not a {config.task} model; known: {list(models_of(config.task))}")
    spec = MODELS[name]
    config.model.name = name
    config.model[spec.group] = config_group(spec.settings)


def staged_trainer(config: ml_collections.ConfigDict) -> Callable | None:
    """The staged trainer of config.model.name (ModelSpec.trainer), imported; None for the one loop's models."""
    return staged_function(config, "trainer")


def staged_function(config: ml_collections.ConfigDict, field: str) -> Callable | None:
    """The function a ModelSpec `field` ('trainer', 'evaluator', 'folder_inference') names for
    config.model.name, imported; None where the model has none (the loop's models)."""
    reference = getattr(model_spec(config), field)
    if reference is None:
        return None
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The module of config.model.name for num_classes classes."""
    return model_spec(config).build(config, num_classes)

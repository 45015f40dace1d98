"""Tasks: what differs between classification, localization, detection and segmentation.

`TASKS` is the one explicit table from `config.task` to code (no decorator registries).
"""

from __future__ import annotations

import ml_collections

from vision_jax.tasks.classification import ClassificationTask
from vision_jax.tasks.detection import DetectionTask
from vision_jax.tasks.localization import LocalizationTask
from vision_jax.tasks.reconstruction import ReconstructionTask
from vision_jax.tasks.segmentation import SegmentationTask

TASKS = {
    "classification": ClassificationTask,
    "detection": DetectionTask,
    "localization": LocalizationTask,
    "reconstruction": ReconstructionTask,
    "segmentation": SegmentationTask,
}


def get_task(config: ml_collections.ConfigDict):
    """The task named by `config.task`, constructed from the config."""
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r} is not a known task; known: {sorted(TASKS)}")
    return TASKS[config.task](config)

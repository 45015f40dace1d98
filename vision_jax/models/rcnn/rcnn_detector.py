"""R-CNN's whole detector from a finished run, as one function of a detection batch: what scripts/predict.py
--images runs for model 'rcnn' (ModelSpec.folder_inference), where the detection task's predict cannot (the
module classifies warped regions; it does not take images).

    init_inputs, make_predict = folder_inference(config, workdir, model)
    variables = ...        # the run's latest checkpoint, on a model initialised from init_inputs
    predict = make_predict(variables)
    detections = predict(batch)

batch: a host detection batch with proposals (vision_jax/data/detection_inputs.py). detections: NumPy, the
detector contract's boxes [B, K, 4] (network-input pixels), scores, classes, valid [B, K], K =
model.rcnn.test_max_detections. Every proposal is warped and run through the fine-tuned CNN (rcnn_regions.py),
scored by settings.test_scorer ('svm': W/rcnn/svm.npz; 'softmax': the CNN's own), moved by the class's box
regressor (W/rcnn/box_regression.npz) with settings.test_box_regression, then per-class NMS
(rcnn_inference.detect_batch): the functions of the evaluate stage, with its configured variant.
"""

from __future__ import annotations

import os
from typing import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.models.rcnn.rcnn_inference import RCNNHeads, Variant, detect_batch, heads_for
from vision_jax.models.rcnn.rcnn_regions import batch_regions, make_region_forward, region_outputs
from vision_jax.models.rcnn.rcnn_run import FOLDER, require_trained_stages
from vision_jax.models.rcnn.region_cnn import rcnn_settings_from_config, region_cnn_init_inputs

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def folder_inference(config: ml_collections.ConfigDict, workdir: str | None,
                     model) -> tuple[dict, Callable[[dict], Predict]]:
    """(init_inputs, make_predict) of the module docstring for the run in `workdir`; ValueError without a
    workdir, FileNotFoundError (naming the stages and the command) when its training stages have not finished."""
    if not workdir:
        raise ValueError("model 'rcnn' detects with a run's fine-tuned CNN, SVMs and box regressors: pass the "
                         "--workdir of a finished `scripts/train.py` run")  # fmt: skip
    require_trained_stages(workdir)
    settings = rcnn_settings_from_config(config)
    variant = Variant(settings.test_scorer, settings.test_box_regression)
    heads = RCNNHeads.load(os.path.join(workdir, FOLDER, "svm.npz") if variant.scorer == "svm" else None,
                           os.path.join(workdir, FOLDER, "box_regression.npz") if variant.box_regression else None)
    arrays = {key: jnp.asarray(value) for key, value in heads_for(heads, variant).items()}
    forward = make_region_forward(model, settings)
    canvas = int(config.data.image_size)

    def make_predict(variables) -> Predict:
        from vision_jax.tasks.detection import image_sizes

        def predict(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            images = jnp.asarray(batch["image"])
            sizes = image_sizes(jnp.asarray(batch["image_info"]), canvas)
            regions = batch_regions(batch, include_ground_truth=False)
            outputs = region_outputs(forward, variables, images, sizes, regions, settings.regions_per_call)
            return detect_batch(outputs, regions, arrays, variant, batch, np.asarray(sizes), settings)

        return predict

    return region_cnn_init_inputs(settings), make_predict

"""Predictions of a model on every JPEG/PNG of a folder, at any size (`scripts/predict.py --images`).

The weights: the latest checkpoint of a run's workdir (checked against the model like an init with
load='all', every key named on a mismatch), or without a workdir the config's `config.init` weights.
Each image goes through its task's evaluation preprocessing (the canonical example made from the
file alone, ground truth empty), so it is resized exactly as in evaluation. No dataset is read: the
class names come from vision_jax.data.info_without_data.

Proposals. A detector that takes region proposals from outside the network (`data.proposals` set: Fast
R-CNN, R-CNN) gets those of the folder's own images: selective search on each file with the config's
settings (`data.selective_search_strategy`, `data.max_proposals`, `data.proposal_workers` processes;
proposals.selective_search_table), keyed by the file's position as its examples are, then scaled with the
image by the evaluation resize. Not cached: a folder is not a dataset split. When `data.proposals` names a
proposal FILE, its ids are those of a dataset's images, not of the folder's: selective search is used all
the same, and the summary (printed by predict.py) and a warning say so.

R-CNN (model 'rcnn') classifies warped regions rather than taking images, so the task's predict does not
apply: its ModelSpec.folder_inference (vision_jax/models/rcnn/rcnn_detector.py) gives the init inputs and
the batch function (CNN on every warped proposal, SVMs or softmax, box regression, NMS); it needs the
--workdir of a finished run (its SVMs and box regressors).

Written into OUT:

* `predictions.jsonl`, one object per image, in file-name order:
    classification  {"file": "a.jpg", "top5": [{"class": name, "score": softmax probability}, ...]}
    detection       {"file": "a.jpg", "detections": [{"box": [x1, y1, x2, y2], "class": name, "score": s,
                     "mask": {"size": [h, w], "counts": str}  (instance segmentation: pycocotools RLE)}, ...]}
                     boxes and masks in the file's ORIGINAL pixels, the detections in score order
    segmentation    {"file": "a.jpg", "label_map": "a.jpg.labels.png", "classes": {value: name, ...}}
* segmentation: `<file>.labels.png`, uint8 [h, w] at the original size, the value of a pixel its
  class (0 = background, k + 1 = class k, as in the training maps);
* `<file>.picture.png`: the image with the prediction drawn on it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from PIL import Image

from vision_jax import tasks, viz
from vision_jax.data import pipeline
from vision_jax.data import proposals as proposal_data
from vision_jax.data.image_files import decoded_images
from vision_jax.data.info_without_data import info_for_prediction
from vision_jax.evaluation.coco import boxes_to_original, encode_masks, masks_to_original
from vision_jax.models.table import staged_function
from vision_jax.train import parallel
from vision_jax.train.initialization import apply_loaded, latest_checkpoint, load_init
from vision_jax.train.steps import make_predict_step

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SUPPORTED_TASKS = ("classification", "detection", "segmentation")
PREDICTIONS_FILE = "predictions.jsonl"
MAX_BATCH = 8  # images per step: a folder of photos, not a benchmark


def image_files(folder: str) -> list[str]:
    """The JPEG and PNG files directly in `folder`, sorted by name."""
    if not os.path.isdir(folder):
        raise ValueError(f"--images {folder!r} is not a folder")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
    if not names:
        raise ValueError(f"--images {folder!r} holds no {'/'.join(IMAGE_SUFFIXES)} file")
    return [os.path.join(folder, n) for n in names]


def model_variables(config, workdir: str | None, model, init_inputs: dict) -> tuple[dict, str]:
    """(variables, where they came from): the workdir's latest checkpoint, else config.init's weights."""
    variables = jax.jit(lambda key: model.init(key, **init_inputs, train=False))(jax.random.key(config.seed, impl="rbg"))
    variables = jax.device_get(dict(variables))
    if workdir:
        step, _ = latest_checkpoint(workdir)
        whole = copy.deepcopy(config)
        whole.init.weights, whole.init.load = workdir, "all"
        whole.init.allow_missing = whole.init.allow_unexpected = False
        return apply_loaded(variables, load_init(whole, variables)), f"the checkpoint of {workdir} at step {step}"
    if not config.init.weights:
        raise ValueError("neither --workdir nor config.init.weights: the model's weights would be random")
    loaded = load_init(config, variables)
    note = loaded.summary
    if loaded.part:
        note += f" (everything outside {'/'.join(loaded.part)} is randomly initialised)"
    return apply_loaded(variables, loaded), note


def _examples(paths: list[str], info) -> tf.data.Dataset:
    """Canonical examples of the files with empty ground truth (dataset_info.py's fields)."""

    def canonical(position, image):
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        example = {"image": image, "image_id": position, "label": tf.constant(0, tf.int64)}
        if "boxes" in info.has:
            example.update(boxes=tf.zeros([0, 4], tf.float32), classes=tf.zeros([0], tf.int64),
                           is_crowd=tf.zeros([0], tf.bool))
        if "masks" in info.has:
            example["masks"] = tf.zeros([0, height, width], tf.uint8)
        if "segmentation" in info.has:
            example["segmentation"] = tf.zeros([height, width], tf.uint8)
        return example

    positions = tf.data.Dataset.range(len(paths))
    return tf.data.Dataset.zip(positions, decoded_images("--images", paths)).map(canonical)


def folder_proposals(config: ml_collections.ConfigDict, examples: tf.data.Dataset,
                     folder: str) -> tuple[proposal_data.ProposalTable | None, str]:
    """(the selective-search proposals of `examples` (_examples of the folder's files), a note saying how they
    were made) for a detector with `data.proposals` set; (None, '') otherwise (module docstring)."""
    source = (config.data.get("proposals") or "") if config.task == "detection" else ""
    if not source:
        return None, ""
    data = config.data
    note = (f"selective search ({data.selective_search_strategy!r}, at most {int(data.max_proposals)} per image) on "
            f"the images of {folder}")
    if source != proposal_data.SELECTIVE_SEARCH:
        note += (f", not the proposal file of config.data.proposals={source!r}: its image ids are a dataset's, "
                 f"not this folder's")
        logger.warning("--images: %s", note)
    return proposal_data.selective_search_table(data, examples, source=f"selective search on {folder}"), note


def _task_inference(task, model, info) -> tuple[dict, Callable]:
    """(init inputs, make_predict(variables) -> predict(host batch) -> host predictions) through the task's
    predict, data-parallel over the local devices."""
    mesh = parallel.make_mesh()
    predict_step = make_predict_step(task, model, mesh)

    def make_predict(variables):
        variables = parallel.replicate(variables, mesh)
        return lambda local: parallel.to_host(predict_step(variables, parallel.global_batch(local, mesh)))

    return task.init_inputs(info), make_predict


def predict_folder(
    config: ml_collections.ConfigDict, workdir: str | None, images: str, output: str, min_score: float | None = None
) -> dict[str, Any]:
    """Writes the files of the module docstring into `output`; returns a summary (counts, sources).
    min_score: detections scoring below it are not written (None: every detection the detector returns; R-CNN's
    SVM scores are margins, negative down to model.rcnn.test_score_threshold)."""
    if config.task not in SUPPORTED_TASKS:
        raise ValueError(f"--images predicts for the tasks {SUPPORTED_TASKS}, not config.task={config.task!r}")
    paths = image_files(images)
    info, info_source = info_for_prediction(config.data, workdir)
    task = tasks.get_task(config)
    model = task.build_model(info)
    staged = staged_function(config, "folder_inference")  # R-CNN: its own (module docstring)
    init_inputs, make_predict = staged(config, workdir, model) if staged else _task_inference(task, model, info)
    variables, weights_source = model_variables(config, workdir, model, init_inputs)
    predict = make_predict(variables)
    examples = _examples(paths, info)
    table, proposals_source = folder_proposals(config, examples, images)
    if table is None:
        preprocess = task.preprocess(info, False)
    else:  # the folder's own proposals: without a table, the task's preprocess reads data.eval_split's
        preprocess = task.preprocess(info, False, proposal_table=table)
    devices = jax.device_count()
    batch_size = devices * max(1, min(MAX_BATCH, -(-len(paths) // devices)))
    os.makedirs(output, exist_ok=True)
    rows = []
    files = iter(paths)
    for local in pipeline.eval_batches(examples, preprocess, batch_size=batch_size):
        predictions = predict(local)
        for b in np.flatnonzero(local["example_valid"]):
            path = next(files)
            one = {k: np.asarray(v[b]) for k, v in predictions.items()}
            row, picture = _describe(config, info, path, one, {k: v[b] for k, v in local.items()}, output, min_score)
            rows.append(row)
            Image.fromarray(picture).save(os.path.join(output, f"{os.path.basename(path)}.picture.png"))
    with open(os.path.join(output, PREDICTIONS_FILE), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    summary = {"images": len(rows), "weights": weights_source, "class_names": info_source, "output": output}
    if proposals_source:
        summary["proposals"] = proposals_source
    return summary


def _original(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _describe(config, info, path, prediction, example, output, min_score) -> tuple[dict, np.ndarray]:
    """(JSON row, picture) of one image's prediction."""
    name = os.path.basename(path)
    image = _original(path)
    if config.task == "classification":
        logits = prediction["logits"].astype(np.float64)
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        top = np.argsort(-probabilities, kind="stable")[:5]
        top5 = [{"class": info.class_names[k], "score": float(probabilities[k])} for k in top]
        lines = [f"{e['class']} {e['score']:.2f}" for e in top5[:3]]
        return {"file": name, "top5": top5}, viz.Canvas(image, lines).finish()
    if config.task == "detection":
        return _detections(config, info, name, image, prediction, example, min_score)
    return _segmentation(config, info, name, image, prediction, output)


def _detections(config, info, name, image, prediction, example, min_score) -> tuple[dict, np.ndarray]:
    keep = prediction["valid"].astype(bool)
    if min_score is not None:
        keep &= prediction["scores"] >= min_score
    order = np.flatnonzero(keep)[np.argsort(-prediction["scores"][keep], kind="stable")]
    image_info = np.asarray(example["image_info"], np.float64)
    boxes = boxes_to_original(prediction["boxes"][order], image_info)
    masks = None
    if "masks" in prediction:
        side = config.data.image_size
        masks = encode_masks(masks_to_original(prediction["masks"][order], image_info, (side, side)))
    detections = []
    for i, k in enumerate(order):
        entry = {"box": [round(float(v), 2) for v in boxes[i]], "class": info.class_names[int(prediction["classes"][k])],
                 "score": float(prediction["scores"][k])}
        if masks is not None:
            entry["mask"] = {"size": [int(s) for s in masks[i]["size"]], "counts": masks[i]["counts"]}
        detections.append(entry)
    threshold = config.model.draw_score_threshold
    shown = prediction["scores"][order] >= threshold
    classes = prediction["classes"][order][shown]
    canvas = viz.draw_detections(
        image, boxes[shown], prediction["scores"][order][shown], classes, np.zeros((0, 4)), np.zeros((0,), int),
        info.class_names, title=[f"{int(shown.sum())} detections scoring >= {threshold:.2f}"],
    )
    return {"file": name, "detections": detections}, canvas.finish(viz.class_legend(classes, info.class_names))


def _segmentation(config, info, name, image, prediction, output) -> tuple[dict, np.ndarray]:
    """The S x S label map holds the image resized to fit (longer side S) at the top left
    (segmentation_transforms.eval_transform): cut that out, back to the original size (nearest)."""
    height, width = image.shape[:2]
    side = config.data.image_size
    scale = side / max(height, width)
    fit_h, fit_w = max(1, int(np.floor(height * scale + 0.5))), max(1, int(np.floor(width * scale + 0.5)))
    labels = prediction["labels"][:fit_h, :fit_w]
    rows = np.minimum(((np.arange(height) + 0.5) * fit_h / height).astype(np.int64), fit_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * fit_w / width).astype(np.int64), fit_w - 1)
    label_map = labels[rows][:, cols].astype(np.uint8)
    map_name = f"{name}.labels.png"
    Image.fromarray(label_map).save(os.path.join(output, map_name))
    names = info.segmentation_class_names
    present = [int(v) for v in np.unique(label_map)]
    legend = [(("fill", viz.color(v - 1)), names[v]) for v in present if 0 < v < len(names)]
    picture = viz.side_by_side([image, viz.overlay_mask(image, label_map)], ["image", "prediction"], legend)
    return {"file": name, "label_map": map_name, "classes": {str(v): names[v] for v in present if v < len(names)}}, picture

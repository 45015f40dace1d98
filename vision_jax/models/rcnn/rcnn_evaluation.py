"""R-CNN's detector on a run's eval split, measured: the evaluate stage (rcnn_stages.stage_evaluate) and
scripts/evaluate.py (`evaluate_rcnn`, ModelSpec.evaluator) both score through `evaluate_detector`.

  evaluate_detector  config.data.eval_split through the whole detector (rcnn_inference.py) -> the detection
                     task's evaluator (COCO metrics by pycocotools, or VOC AP50 with data.eval_metric): the
                     configured detector's metrics (AP, AP50, ...) and, for comparison, `softmax_AP*` (the
                     fine-tuned CNN's own scores, no box regression) and `svm_AP*` (SVMs without box
                     regression), as the paper's ablations; inference seconds summed per part (features /
                     per-region heads / post-processing), the first batch (which compiles) left out
  selective_search_seconds  seconds per image of selective search, the proposals' part of inference
  evaluate_rcnn      scripts/evaluate.py for a finished run: the evaluate stage's metrics again, on any split,
                     the run's record (metrics.jsonl, pictures, rcnn/evaluation.json) untouched
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.data import datasets, pipeline
from vision_jax.data import proposals as proposal_data
from vision_jax.models.rcnn.rcnn_inference import (RCNNHeads, Variant, heads_for, padded_to_calls, postprocess,
                                                   score_regions)
from vision_jax.models.rcnn.rcnn_regions import batch_regions, make_region_forward, region_outputs
from vision_jax.models.rcnn.rcnn_run import RCNNRun, require_trained_stages
from vision_jax.train.pictures import write_pictures

COMPARISON_METRICS = ("AP", "AP50", "AP75")


def selective_search_seconds(run: RCNNRun, num_images: int = 16) -> float:
    """Seconds per image of selective search (one process) on the first eval images; 0 for a proposal file."""
    if run.config.data.proposals != proposal_data.SELECTIVE_SEARCH:
        return 0.0
    import tensorflow_datasets as tfds

    from vision_jax.data.selective_search import selective_search

    ds, _ = datasets.load(run.config.data, run.config.data.eval_split)
    images = [ex["image"] for ex in tfds.as_numpy(ds.take(num_images).map(lambda e: {"image": e["image"]}))]
    start = time.perf_counter()
    for image in images:
        selective_search(image, strategy=run.config.data.selective_search_strategy,
                         max_proposals=int(run.config.data.max_proposals))  # fmt: skip
    return (time.perf_counter() - start) / max(len(images), 1)


def evaluate_detector(run: RCNNRun, pictures_dir: str | None = None) -> tuple[dict, dict, int, object]:
    """config.data.eval_split through the whole detector (settings.test_scorer, test_box_regression) and, for
    comparison, the softmax and the SVMs without box regression, each scored by the detection task's evaluator.

    Returns (metrics: the detector's, plus COMPARISON_METRICS of the two others prefixed 'softmax_' / 'svm_';
    seconds per part ('features', 'heads', 'postprocess') summed over every batch but the first, which
    compiles; the number of images timed; the detector's evaluator, for its artifacts). With pictures_dir, the
    first batch's detections are drawn there (config.train.num_pictures)."""
    s, config = run.settings, run.config
    heads = RCNNHeads.load(run.path("svm.npz"), run.path("box_regression.npz"))
    variants = {"": Variant(s.test_scorer, s.test_box_regression), "softmax_": Variant("softmax", False),
                "svm_": Variant("svm", False)}  # fmt: skip
    from vision_jax.tasks.detection import DetectionTask  # the task's evaluator: COCO or VOC (data.eval_metric)

    task = DetectionTask(config)
    evaluators = {prefix: task.make_evaluator(run.info) for prefix in variants}
    arrays = {prefix: {k: jnp.asarray(v) for k, v in heads_for(heads, v).items()} for prefix, v in variants.items()}
    forward = make_region_forward(run.model, s)
    variables = run.variables()
    eval_ds, _ = datasets.load(config.data, config.data.eval_split)
    batches = pipeline.eval_batches(eval_ds, run.preprocess(config.data.eval_split, False),
                                    batch_size=config.train.eval_batch_size)  # fmt: skip
    seconds = {"features": 0.0, "heads": 0.0, "postprocess": 0.0}
    timed_images, drawn = 0, not pictures_dir
    for index, batch in enumerate(batches):
        images, sizes = run.regions_of(batch)
        regions = batch_regions(batch, include_ground_truth=False)
        start = time.perf_counter()
        outputs = region_outputs(forward, variables, images, sizes, regions, s.regions_per_call)
        features_done = time.perf_counter()
        count = len(regions.boxes)
        device_outputs, device_boxes = padded_to_calls(outputs, regions.boxes, s.regions_per_call)
        for prefix, variant in variants.items():
            heads_start = time.perf_counter()
            scores, class_boxes = score_regions(device_outputs, device_boxes, arrays[prefix], variant.scorer,
                                                variant.box_regression)  # fmt: skip
            scores, class_boxes = np.asarray(scores)[:count], np.asarray(class_boxes)[:count]
            post_start = time.perf_counter()
            predictions = postprocess(regions, scores, class_boxes, len(batch["image"]), batch["proposals"].shape[1],
                                      np.asarray(sizes), s)  # fmt: skip
            post_done = time.perf_counter()
            evaluators[prefix].update(predictions, batch)
            if prefix == "" and index > 0:  # the first batch compiles: not timed
                seconds["heads"] += post_start - heads_start
                seconds["postprocess"] += post_done - post_start
            if prefix == "" and not drawn:
                n = config.train.num_pictures
                pictures = task.draw({k: v[:n] for k, v in batch.items()},
                                                      {k: v[:n] for k, v in predictions.items()}, run.info)  # fmt: skip
                write_pictures(pictures_dir, pictures)
                drawn = True
        if index > 0:
            seconds["features"] += features_done - start
            timed_images += int(np.sum(batch["example_valid"]))
    results = dict(evaluators[""].result())
    for prefix in ("softmax_", "svm_"):
        other = evaluators[prefix].result()
        results.update({prefix + key: other[key] for key in COMPARISON_METRICS if key in other})
    return results, seconds, timed_images, evaluators[""]


def evaluate_rcnn(config: ml_collections.ConfigDict, workdir: str,
                  artifacts_dir: str | None = None) -> tuple[int, dict]:
    """scripts/evaluate.py for model 'rcnn' (ModelSpec.evaluator): the evaluate stage's metrics (evaluate_detector)
    of a run whose other stages have finished, on config.data.eval_split, with the CNN of the latest checkpoint
    and the run's SVMs and box regressors. Nothing of the run is rewritten (no metrics.jsonl row, pictures or
    rcnn/evaluation.json: the stage's own record stays); the evaluator's artifacts (COCO: the detections) go into
    artifacts_dir as step_<N>_<name>, as evaluate.py writes them for the other models. Returns (step, metrics)."""
    from vision_jax.train.loop import write_artifacts

    require_trained_stages(workdir)
    run = RCNNRun(config, workdir)
    results, _, _, evaluator = evaluate_detector(run)
    step = int(run.checkpoint_step)
    if artifacts_dir:
        write_artifacts(evaluator, artifacts_dir, step)
    return step, results

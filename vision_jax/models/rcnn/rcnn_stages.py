"""R-CNN's training, stage by stage, from one command (scripts/train.py runs `train_rcnn` for model 'rcnn'):

    python scripts/train.py --config configs/detection/shapes_rcnn.py --workdir W

  1. proposals       selective search (or the user's file) on the train and eval splits, computed once and
                     cached (vision_jax/data/proposals.py); W/rcnn/proposals.json: counts and the eval split's
                     recall at IoU 0.5 / 0.7
  2. finetune        the CNN fine-tuned on warped regions (rcnn_finetune.py) with config.optimizer for
                     config.train.num_steps batches of config.train.batch_size images; orbax checkpoints in
                     W/checkpoints (an interrupted stage resumes from the latest), train metrics in
                     W/metrics.jsonl
  3. features        the CNN's features of every region (ground truth + proposals) of the first
                     model.rcnn.feature_images training images -> W/rcnn/features_train.npz
  4. svm             per-class SVMs with hard negative mining (rcnn_svm.py) -> W/rcnn/svm.npz
  5. box_regression  per-class ridge box regressors (rcnn_box_regression.py) -> W/rcnn/box_regression.npz
  6. evaluate        the eval split through the whole detector and the detection task's evaluator
                     (rcnn_evaluation.evaluate_detector: COCO metrics by pycocotools, or VOC AP50 with
                     data.eval_metric) -> the eval row of W/metrics.jsonl at the last fine-tuning step,
                     W/eval/step_<N>.json, W/pictures/, and W/rcnn/evaluation.json (with inference seconds per
                     image split into proposals / features / per-region heads / post-processing)

Each stage writes its output atomically (a temporary file renamed, rcnn_run.write_atomically) and then records
itself in W/rcnn/stages.json (minutes, finish time; rcnn_run.StageLog); a run started again skips the recorded
stages, saying so, and continues with the first one missing. The eval row holds the configured detector's
metrics (AP, AP50, ...) and, for comparison, `softmax_AP*` (the fine-tuned CNN's own scores, no box regression)
and `svm_AP*` (SVMs without box regression), as the paper's ablations. The state the stages share (config,
data, model, proposal tables, the fine-tuned variables) is rcnn_run.RCNNRun; a finished run is evaluated again
by rcnn_evaluation.evaluate_rcnn (scripts/evaluate.py).
"""

from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from vision_jax.data import datasets, pipeline
from vision_jax.data import proposals as proposal_data
from vision_jax.models.rcnn.rcnn_box_regression import box_iou_numpy, fit_box_regressors, regression_examples
from vision_jax.models.rcnn.rcnn_evaluation import evaluate_detector, selective_search_seconds
from vision_jax.models.rcnn.rcnn_finetune import FinetuneTask
from vision_jax.models.rcnn.rcnn_regions import batch_regions, make_region_forward, region_outputs
from vision_jax.models.rcnn.rcnn_run import STAGES, RCNNRun, StageLog, say, write_atomically, write_json
from vision_jax.models.rcnn.rcnn_svm import feature_scale, mine_svm
from vision_jax.train import checkpoints, parallel, run_config
from vision_jax.train.progress import Progress
from vision_jax.train.steps import make_train_step
from vision_jax.train.writers import MetricWriter


def stage_proposals(run: RCNNRun) -> dict:
    data = run.config.data
    summary = {}
    for split in dict.fromkeys((data.train_split, data.eval_split)):
        table = run.table(split)
        counts = table.counts()
        summary[split] = {"images": int(len(counts)), "proposals_per_image": float(counts.mean()),
                          "min": int(counts.min()), "max": int(counts.max()),
                          "whole_image_fallbacks": int(table.whole_image_fallbacks), "source": table.source}  # fmt: skip
    eval_ds, _ = datasets.load(data, data.eval_split)
    import tensorflow_datasets as tfds

    truth = {int(ex["image_id"]): np.asarray(ex["boxes"]).reshape(-1, 4)
             for ex in tfds.as_numpy(eval_ds.map(lambda e: {"image_id": e["image_id"], "boxes": e["boxes"]}))}  # fmt: skip
    summary[data.eval_split].update(proposal_data.proposal_recall(run.table(data.eval_split), truth))
    write_json(run.path("proposals.json"), summary)
    e = summary[data.eval_split]
    say(f"R-CNN proposals: {e['proposals_per_image']:.1f} per image on {data.eval_split}, recall {e['recall@0.5']:.3f} "
        f"at IoU 0.5, {e['recall@0.7']:.3f} at 0.7")  # fmt: skip
    return {"eval_recall@0.5": e["recall@0.5"], "eval_recall@0.7": e["recall@0.7"]}


def stage_finetune(run: RCNNRun) -> dict:
    config, t = run.config, run.config.train
    manager = checkpoints.make_manager(run.workdir, t.keep_checkpoints)
    start = manager.latest_step() or 0
    state = run.restore(manager, start) if start else parallel.replicate(run.init_state(), run.mesh)
    if start:
        say(f"R-CNN finetune: resuming from the checkpoint of step {start}")
    task = FinetuneTask(run.settings, run.num_classes, run.canvas)
    train_step = make_train_step(task, run.model, run.tx, run.mesh, run.schedule)
    batches = pipeline.train_batches(run.train_ds, run.preprocess(config.data.train_split, True),
                                     batch_size=t.batch_size, seed=config.seed, start_step=start,
                                     cache=config.data.cache)  # fmt: skip
    writer = MetricWriter(run.workdir, start)
    progress = Progress(t.num_steps, start, bar=t.progress_bar)
    pending, tick, tick_step = [], time.perf_counter(), start
    try:
        for step in range(start + 1, t.num_steps + 1):
            state, metrics = train_step(state, parallel.global_batch(next(batches), run.mesh))
            pending.append(metrics)
            progress.update()
            if step % t.log_every == 0 or step == t.num_steps:
                host = parallel.replicated_to_host(pending)
                if min(float(m["finite"]) for m in host) == 0.0:
                    raise FloatingPointError(f"R-CNN finetune: non-finite loss or gradient before step {step}; "
                                             f"the last checkpoint ({manager.latest_step()}) is kept")  # fmt: skip
                now = time.perf_counter()
                summary = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "finite"}
                summary["images_per_second"] = (step - tick_step) * t.batch_size / (now - tick)
                progress.log(step, summary, (now - tick) / (step - tick_step))
                writer.write(step, "train", summary)
                pending, tick, tick_step = [], now, step
            if step % t.checkpoint_every == 0 or step == t.num_steps:
                checkpoints.save(manager, state)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        progress.close()
    run._variables, run.checkpoint_step = state.variables, int(t.num_steps)
    return {"steps": int(t.num_steps)}


def stage_features(run: RCNNRun) -> dict:
    """Per region of the first feature_images training images: fc features (SVMs), the IoU with each class's
    ground truth, the ground-truth class (-1 for proposals); regression examples with their pooled features."""
    s, data = run.settings, run.config.data
    ds = run.train_ds.take(s.feature_images) if s.feature_images else run.train_ds
    forward = make_region_forward(run.model, s)
    variables = run.variables()
    features, overlaps, region_class, counts = [], [], [], []
    reg_pooled, reg_targets, reg_classes = [], [], []
    pooled_norms = []
    batches = pipeline.eval_batches(ds, run.preprocess(data.train_split, False), batch_size=run.config.train.eval_batch_size)
    for batch in batches:
        regions = batch_regions(batch, include_ground_truth=True)
        images, sizes = run.regions_of(batch)
        outputs = region_outputs(forward, variables, images, sizes, regions, s.regions_per_call)
        pooled_norms.append(np.linalg.norm(outputs["pooled"], axis=1))
        for b in np.unique(regions.image_index):
            rows = regions.of_image(b)
            boxes = regions.boxes[rows]
            gt = np.flatnonzero(np.asarray(batch["valid"][b], bool) & ~np.asarray(batch["is_crowd"][b], bool))
            gt_boxes, gt_classes = np.asarray(batch["boxes"][b])[gt], np.asarray(batch["classes"][b])[gt]
            overlap = np.zeros((len(rows), run.num_classes), np.float32)
            for c in np.unique(gt_classes):
                overlap[:, c] = box_iou_numpy(boxes, gt_boxes[gt_classes == c]).max(axis=1)
            features.append(outputs["features"][rows].astype(np.float16))
            overlaps.append(overlap.astype(np.float16))
            region_class.append(regions.gt_class[rows].astype(np.int8))
            counts.append(len(rows))
            ex_rows, targets, classes = regression_examples(boxes, gt_boxes, gt_classes, s.box_reg_min_overlap)
            reg_pooled.append(outputs["pooled"][rows][ex_rows])
            reg_targets.append(targets.astype(np.float32))
            reg_classes.append(classes)
    arrays = {
        "features": np.concatenate(features), "overlap": np.concatenate(overlaps),
        "region_class": np.concatenate(region_class), "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "reg_pooled": np.concatenate(reg_pooled), "reg_targets": np.concatenate(reg_targets),
        "reg_classes": np.concatenate(reg_classes), "pooled_mean_norm": np.float64(np.concatenate(pooled_norms).mean()),
    }  # fmt: skip
    write_atomically(run.path("features_train.npz"), lambda f: np.savez(f, **arrays))
    say(f"R-CNN features: {len(counts)} images, {len(arrays['features'])} regions "
        f"({len(arrays['features']) / max(len(counts), 1):.1f} per image), {len(arrays['reg_classes'])} regression examples")
    return {"images": len(counts), "regions": int(len(arrays["features"]))}


def stage_svm(run: RCNNRun) -> dict:
    s = run.settings
    with np.load(run.path("features_train.npz")) as data:
        features, overlap = data["features"].astype(np.float32), data["overlap"].astype(np.float32)
        region_class, offsets = data["region_class"].astype(np.int64), data["offsets"]
    scale = feature_scale(features)
    dim = features.shape[1]
    weights, bias = np.zeros((dim, run.num_classes), np.float32), np.zeros(run.num_classes, np.float32)
    report = {}
    for c in range(run.num_classes):
        negative = (overlap[:, c] < s.svm_negative_iou) & (region_class != c)
        per_image = [features[a:z][negative[a:z]] for a, z in zip(offsets[:-1], offsets[1:])]
        mined = mine_svm(features[region_class == c], per_image, s.svm, scale=scale)
        weights[:, c], bias[c] = mined.weights, mined.bias
        report[run.info.class_names[c]] = {"positives": mined.num_positives, "cached_negatives": mined.num_cached_negatives,
                                           "support_negatives": int(len(mined.support_negatives)),
                                           "trainings": mined.num_trainings,
                                           "objective": mined.objective[-1] if mined.objective else None}  # fmt: skip
        say(f"R-CNN SVM {run.info.class_names[c]!r}: {mined.num_positives} positives, {sum(map(len, per_image))} "
            f"negatives, {mined.num_trainings} trainings, {mined.num_cached_negatives} cached at the end")
    write_atomically(run.path("svm.npz"), lambda f: np.savez(f, weights=weights, bias=bias, scale=scale))
    return {"feature_scale": scale, "classes": report}


def stage_box_regression(run: RCNNRun) -> dict:
    s = run.settings
    with np.load(run.path("features_train.npz")) as data:
        pooled, targets, classes = data["reg_pooled"], data["reg_targets"], data["reg_classes"]
        scale = 20.0 / float(data["pooled_mean_norm"])  # rcnn_scale_features with pool5's mean norm
    regressors = fit_box_regressors(pooled, targets.astype(np.float64), classes, run.num_classes,
                                    ridge_lambda=s.box_reg_lambda, scale=scale)  # fmt: skip
    write_atomically(run.path("box_regression.npz"),
                      lambda f: np.savez(f, weights=regressors.weights, biases=regressors.biases))  # fmt: skip
    return {"examples_per_class": regressors.num_examples.tolist()}


def stage_evaluate(run: RCNNRun) -> dict:
    config = run.config
    results, seconds, timed_images, _ = evaluate_detector(run, os.path.join(run.workdir, "pictures"))
    per_image = {f"seconds_per_image_{k}": v / max(timed_images, 1) for k, v in seconds.items()}
    per_image["seconds_per_image_proposals"] = selective_search_seconds(run)
    step = int(config.train.num_steps)
    writer = MetricWriter(run.workdir, step, rewrite_eval_at_start=True)
    writer.write(step, "eval", results)
    writer.close()
    write_json(os.path.join(run.workdir, "eval", f"step_{step:08d}.json"), {"step": step, **results})
    write_json(run.path("evaluation.json"), {"metrics": results, "inference": per_image, "timed_images": timed_images})
    say("R-CNN eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
    say("R-CNN inference seconds per image: " + ", ".join(f"{k[len('seconds_per_image_'):]} {v:.4f}"
                                                          for k, v in per_image.items()))  # fmt: skip
    return {"metrics": results, "inference": per_image}


STAGE_FUNCTIONS = {"proposals": stage_proposals, "finetune": stage_finetune, "features": stage_features,
                   "svm": stage_svm, "box_regression": stage_box_regression, "evaluate": stage_evaluate}  # fmt: skip


def train_rcnn(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Runs the stages not yet recorded in W/rcnn/stages.json, in order (module docstring); returns the final
    evaluation's metrics (read back from W/rcnn/evaluation.json when every stage had run before)."""
    from vision_jax.train.loop import require_writable_workdir

    require_writable_workdir(workdir)
    run = RCNNRun(config, workdir)
    log = StageLog(workdir)
    checkpoints_step = checkpoints.make_manager(workdir, config.train.keep_checkpoints)
    run_config.record_start(workdir, config, checkpoints_step.latest_step() or 0)
    checkpoints_step.close()
    for stage in STAGES:
        if log.done(stage):
            say(f"R-CNN stage {stage!r} finished earlier ({log.stages[stage]['minutes']:.1f} min): skipped")
            continue
        say(f"R-CNN stage {stage!r} ...")
        start = time.perf_counter()
        details = STAGE_FUNCTIONS[stage](run)
        minutes = (time.perf_counter() - start) / 60
        log.finish(stage, minutes, **({"details": details} if stage != "evaluate" else {}))
        say(f"R-CNN stage {stage!r} done in {minutes:.1f} min")
    with open(run.path("evaluation.json")) as f:
        return json.load(f)["metrics"]

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
  6. evaluate        the eval split through the whole detector (rcnn_inference.py), the detection task's
                     evaluator (COCO metrics by pycocotools, or VOC AP50 with data.eval_metric)
                     -> the eval row of W/metrics.jsonl at the last fine-tuning step, W/eval/step_<N>.json,
                     W/pictures/, and W/rcnn/evaluation.json (with inference seconds per image split into
                     proposals / features / per-region heads / post-processing)

Each stage writes its output atomically (a temporary file renamed) and then records itself in
W/rcnn/stages.json (minutes, finish time); a run started again skips the recorded stages, saying so, and
continues with the first one missing. The eval row holds the configured detector's metrics (AP, AP50, ...)
and, for comparison, `softmax_AP*` (the fine-tuned CNN's own scores, no box regression) and `svm_AP*`
(SVMs without box regression), as the paper's ablations. Single process (the CNN stages use every local
device through vision_jax.train's data-parallel step; the SVM and regression stages are NumPy/scikit-learn).

`evaluate_rcnn(config, workdir, artifacts_dir)` (ModelSpec.evaluator) is what scripts/evaluate.py runs for a
finished run: the evaluate stage's metrics again (evaluate_detector), on any split, the run's record untouched.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.data import datasets, pipeline, small_data
from vision_jax.data import proposals as proposal_data
from vision_jax.data.detection_inputs import make_detection_preprocess
from vision_jax.models.rcnn.rcnn_box_regression import box_iou_numpy, fit_box_regressors, regression_examples
from vision_jax.models.rcnn.rcnn_finetune import FinetuneTask
from vision_jax.models.rcnn.rcnn_inference import (RCNNHeads, Variant, heads_for, padded_to_calls, postprocess,
                                                   score_regions)
from vision_jax.models.rcnn.rcnn_regions import batch_regions, make_region_forward, region_outputs
from vision_jax.models.rcnn.rcnn_svm import feature_scale, mine_svm
from vision_jax.models.rcnn.region_cnn import rcnn_settings_from_config, region_cnn_init_inputs
from vision_jax.models.table import build_model
from vision_jax.train import checkpoints, parallel, run_config
from vision_jax.train.config import ConfigError, validate
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.pictures import write_pictures
from vision_jax.train.progress import Progress
from vision_jax.train.state import create_train_state
from vision_jax.train.steps import make_train_step
from vision_jax.train.writers import MetricWriter

logger = logging.getLogger(__name__)

STAGES = ("proposals", "finetune", "features", "svm", "box_regression", "evaluate")
FOLDER = "rcnn"
COMPARISON_METRICS = ("AP", "AP50", "AP75")


def _say(text: str) -> None:
    print(text, flush=True)


def _write_atomically(path: str, write) -> None:
    """write(file object) into a temporary file beside `path`, then renamed onto it."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _write_json(path: str, content: dict) -> None:
    _write_atomically(path, lambda f: f.write(json.dumps(content, indent=2).encode()))


class StageLog:
    """W/rcnn/stages.json: {stage: {'minutes': float, 'finished': iso time, ...}} of the finished stages."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, FOLDER, "stages.json")
        self.stages = json.load(open(self.path)) if os.path.exists(self.path) else {}

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def finish(self, stage: str, minutes: float, **details) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.stages[stage] = {"minutes": round(minutes, 3), "finished": now, **details}
        _write_json(self.path, self.stages)


class RCNNRun:
    """The state the stages share: config, data, model, proposal tables, the fine-tuned variables."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        validate(config)
        if jax.process_count() > 1:
            raise ConfigError("model 'rcnn' trains in one process (its SVM and regression stages are NumPy)")
        if not config.data.get("proposals"):
            raise ConfigError("model 'rcnn' needs region proposals: set config.data.proposals to "
                              "'selective_search' or a proposal file (vision_jax/data/proposals.py)")  # fmt: skip
        self.config, self.workdir = config, workdir
        self.settings = rcnn_settings_from_config(config)
        self.folder = os.path.join(workdir, FOLDER)
        self.train_ds, self.info = datasets.load(config.data, config.data.train_split)
        small_data.fit_config_to_data(config, self.train_ds, self.info, device_count=jax.device_count(), process_count=1)
        self.num_classes = self.info.num_classes
        self.model = build_model(config, self.num_classes)
        self.mesh = parallel.make_mesh()
        self.canvas = int(config.data.image_size)
        self._tables: dict[str, proposal_data.ProposalTable] = {}
        self._variables = None
        self.checkpoint_step: int | None = None  # the step of the variables, once loaded
        self.tx, self.schedule = build_optimizer(config.optimizer, config.train.num_steps)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def table(self, split: str) -> proposal_data.ProposalTable:
        if split not in self._tables:
            self._tables[split] = proposal_data.proposal_table(self.config.data, split)
        return self._tables[split]

    def preprocess(self, split: str, train: bool):
        return make_detection_preprocess(self.config, self.info, train, split=split, proposal_table=self.table(split))

    def init_state(self):
        return create_train_state(self.model, region_cnn_init_inputs(self.settings), self.tx, self.config.seed)

    def restore(self, manager, step: int):
        sharding = parallel.replicated(self.mesh)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                jax.eval_shape(self.init_state))  # fmt: skip
        return checkpoints.restore(manager, step, abstract)

    def variables(self):
        """The fine-tuned CNN's variables (the last checkpoint of the finetune stage)."""
        if self._variables is None:
            manager = checkpoints.make_manager(self.workdir, self.config.train.keep_checkpoints)
            step = manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"{self.workdir}/checkpoints holds no checkpoint: the finetune stage has not run")
            self._variables, self.checkpoint_step = self.restore(manager, step).variables, step
            manager.close()
        return self._variables

    def regions_of(self, batch):
        images = jnp.asarray(batch["image"])
        from vision_jax.tasks.detection import image_sizes

        return images, image_sizes(jnp.asarray(batch["image_info"]), self.canvas)


# --- the stages -----------------------------------------------------------------------------------------
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
    _write_json(run.path("proposals.json"), summary)
    e = summary[data.eval_split]
    _say(f"R-CNN proposals: {e['proposals_per_image']:.1f} per image on {data.eval_split}, recall {e['recall@0.5']:.3f} "
         f"at IoU 0.5, {e['recall@0.7']:.3f} at 0.7")  # fmt: skip
    return {"eval_recall@0.5": e["recall@0.5"], "eval_recall@0.7": e["recall@0.7"]}


def stage_finetune(run: RCNNRun) -> dict:
    config, t = run.config, run.config.train
    manager = checkpoints.make_manager(run.workdir, t.keep_checkpoints)
    start = manager.latest_step() or 0
    state = run.restore(manager, start) if start else parallel.replicate(run.init_state(), run.mesh)
    if start:
        _say(f"R-CNN finetune: resuming from the checkpoint of step {start}")
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
    _write_atomically(run.path("features_train.npz"), lambda f: np.savez(f, **arrays))
    _say(f"R-CNN features: {len(counts)} images, {len(arrays['features'])} regions "
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
        _say(f"R-CNN SVM {run.info.class_names[c]!r}: {mined.num_positives} positives, {sum(map(len, per_image))} "
             f"negatives, {mined.num_trainings} trainings, {mined.num_cached_negatives} cached at the end")
    _write_atomically(run.path("svm.npz"), lambda f: np.savez(f, weights=weights, bias=bias, scale=scale))
    return {"feature_scale": scale, "classes": report}


def stage_box_regression(run: RCNNRun) -> dict:
    s = run.settings
    with np.load(run.path("features_train.npz")) as data:
        pooled, targets, classes = data["reg_pooled"], data["reg_targets"], data["reg_classes"]
        scale = 20.0 / float(data["pooled_mean_norm"])  # rcnn_scale_features with pool5's mean norm
    regressors = fit_box_regressors(pooled, targets.astype(np.float64), classes, run.num_classes,
                                    ridge_lambda=s.box_reg_lambda, scale=scale)  # fmt: skip
    _write_atomically(run.path("box_regression.npz"),
                      lambda f: np.savez(f, weights=regressors.weights, biases=regressors.biases))  # fmt: skip
    return {"examples_per_class": regressors.num_examples.tolist()}


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


def stage_evaluate(run: RCNNRun) -> dict:
    config = run.config
    results, seconds, timed_images, _ = evaluate_detector(run, os.path.join(run.workdir, "pictures"))
    per_image = {f"seconds_per_image_{k}": v / max(timed_images, 1) for k, v in seconds.items()}
    per_image["seconds_per_image_proposals"] = selective_search_seconds(run)
    step = int(config.train.num_steps)
    writer = MetricWriter(run.workdir, step, rewrite_eval_at_start=True)
    writer.write(step, "eval", results)
    writer.close()
    _write_json(os.path.join(run.workdir, "eval", f"step_{step:08d}.json"), {"step": step, **results})
    _write_json(run.path("evaluation.json"), {"metrics": results, "inference": per_image, "timed_images": timed_images})
    _say("R-CNN eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
    _say("R-CNN inference seconds per image: " + ", ".join(f"{k[len('seconds_per_image_'):]} {v:.4f}"
                                                           for k, v in per_image.items()))  # fmt: skip
    return {"metrics": results, "inference": per_image}


def require_trained_stages(workdir: str) -> None:
    """FileNotFoundError naming the stages before 'evaluate' that `workdir` has not finished, and the command
    that runs them."""
    log = StageLog(workdir)
    missing = [stage for stage in STAGES[: STAGES.index("evaluate")] if not log.done(stage)]
    if missing:
        raise FileNotFoundError(
            f"model 'rcnn': {workdir} has not finished the stages {missing} (recorded in {log.path}); "
            f"`python scripts/train.py --workdir {workdir} --config CONFIG` runs the missing stages and evaluates")


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
            _say(f"R-CNN stage {stage!r} finished earlier ({log.stages[stage]['minutes']:.1f} min): skipped")
            continue
        _say(f"R-CNN stage {stage!r} ...")
        start = time.perf_counter()
        details = STAGE_FUNCTIONS[stage](run)
        minutes = (time.perf_counter() - start) / 60
        log.finish(stage, minutes, **({"details": details} if stage != "evaluate" else {}))
        _say(f"R-CNN stage {stage!r} done in {minutes:.1f} min")
    with open(run.path("evaluation.json")) as f:
        return json.load(f)["metrics"]

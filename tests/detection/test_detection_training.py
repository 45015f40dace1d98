"""Faster R-CNN trained by the one train loop on a few generated scenes.

One small run (module fixture) serves three checks: the train step compiles once although the
steps' images hold different numbers of objects (issue 5, acceptance c), the model overfits the
images to COCO AP50 >= 0.95 measured by pycocotools (acceptance d), and the task draws its
detections with class names and scores.
"""

import os

import numpy as np
import pytest
from jax import monitoring

from vision_jax import viz
from vision_jax.tasks.detection import DetectionTask
from vision_jax.train import loop
from vision_jax.train.config import base_config

NUM_IMAGES, BATCH, STEPS = 4, 2, 120
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration")


def overfit_config(data_dir: str):
    c = base_config("detection", model="faster_rcnn")
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", data_dir
    c.data.shapes_num_train, c.data.shapes_num_test = NUM_IMAGES, 1
    c.data.eval_split = "train"  # overfitting: evaluated on the training images
    c.data.image_size = c.data.min_size = c.data.max_size = 64  # the 128 x 128 scenes at half size
    c.data.random_flip, c.data.max_instances = False, 8
    c.model.backbone, c.model.width = "resnet18", 8
    r = c.model.rcnn
    r.fpn_channels = 32
    r.anchor_sizes = ((8,), (16,), (32,), (64,), (128,))  # objects are 6-26 px
    r.rpn_pre_nms_topk_train, r.rpn_post_nms_topk_train = 300, 150
    r.rpn_pre_nms_topk_test, r.rpn_post_nms_topk_test = 200, 100
    r.roi_num_samples, r.box_head_fc_dim = 64, 128
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = STEPS, BATCH, NUM_IMAGES
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 40, STEPS, STEPS
    c.train.num_pictures, c.train.progress_bar = NUM_IMAGES, False
    return c


class CountingTrainStep:
    """Wraps the loop's train step; counts traces and XLA compilations that happen inside each call."""

    def __init__(self, step):
        self.step, self.inside, self.compiles_per_call, self.objects_per_call = step, False, [], []
        monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if self.inside and event in COMPILE_EVENTS:
            self.compiles_per_call[-1] += 1

    def __call__(self, state, batch):
        self.objects_per_call.append(tuple(np.asarray(batch["valid"]).sum(axis=1)))
        self.compiles_per_call.append(0)
        self.inside = True
        try:
            return self.step(state, batch)
        finally:
            self.inside = False


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("overfit")
    config = overfit_config(str(tmp_path_factory.mktemp("tfds")))
    counters, drawn = [], []
    original_make_train_step, original_draw = loop.make_train_step, DetectionTask.draw

    def counting_make_train_step(*args, **kwargs):
        counters.append(CountingTrainStep(original_make_train_step(*args, **kwargs)))
        return counters[-1]

    def recording_draw(self, batch, predictions, info):
        pictures = original_draw(self, batch, predictions, info)
        drawn.append((batch, predictions, info, pictures))
        return pictures

    loop.make_train_step, DetectionTask.draw = counting_make_train_step, recording_draw
    try:
        results = loop.train_and_evaluate(config, str(workdir))
    finally:
        loop.make_train_step, DetectionTask.draw = original_make_train_step, original_draw
    return config, workdir, results, counters[0], drawn[-1]


@pytest.mark.slow
def test_train_step_compiles_once_whatever_the_number_of_objects(trained):
    counter = trained[3]
    assert len(counter.compiles_per_call) == STEPS
    assert len(set(counter.objects_per_call)) > 1 and len({sum(c) for c in counter.objects_per_call}) > 1, (
        f"the steps must see different numbers of objects; saw {sorted(set(counter.objects_per_call))}"
    )
    assert counter.compiles_per_call[0] >= 1, "the first step must have compiled (the counter hears nothing?)"
    later = [i + 1 for i, n in enumerate(counter.compiles_per_call[1:]) if n]
    assert not later, (
        f"the train step traced/compiled again at steps {later}; objects per image: {counter.objects_per_call[:8]}"
    )
    assert counter.step._cache_size() == 1


@pytest.mark.slow
def test_overfits_a_few_scenes_to_ap50(trained):
    results = trained[2]
    print(f"after {STEPS} steps on {NUM_IMAGES} images: {results}")
    assert results["AP50"] >= 0.95, f"AP50={results['AP50']:.3f} after {STEPS} steps on {NUM_IMAGES} images: {results}"


@pytest.mark.slow
def test_draws_detections_with_class_names_and_scores(trained):
    config, workdir, _, _, (batch, predictions, info, pictures) = trained
    threshold = config.model.draw_score_threshold
    assert len(pictures) == NUM_IMAGES
    assert sorted(os.listdir(os.path.join(workdir, "pictures"))) == [f"eval_{i:02d}.png" for i in range(NUM_IMAGES)] + [
        "eval_sheet.png"
    ]
    for b in range(NUM_IMAGES):
        keep = predictions["valid"][b] & (predictions["scores"][b] >= threshold)
        assert keep.any(), f"image {b}: an overfitted model must detect something above {threshold}"
        boxes, classes, scores = (
            predictions["boxes"][b][keep],
            predictions["classes"][b][keep],
            predictions["scores"][b][keep],
        )
        valid = batch["valid"][b]
        truth, truth_classes = batch["boxes"][b][valid], batch["classes"][b][valid]
        image = viz.to_uint8(batch["image"][b])  # the resized scenes fill the canvas: nothing to crop
        canvas = viz.draw_detections(
            image, boxes, scores, classes, truth, truth_classes, info.class_names,
            truth_crowd=batch["is_crowd"][b][valid], min_score=threshold,
        )
        legend = [*viz.STYLE_LEGEND, *viz.class_legend([*classes, *truth_classes], info.class_names)]
        np.testing.assert_array_equal(pictures[b], canvas.finish(legend))
        # Each drawn detection is captioned 'class score' on its class colour.
        captions = sorted(c.text for c in canvas.captions if c.background not in (viz.BLACK, viz.ERROR_RGB))
        assert captions == sorted(f"{info.class_names[k]} {s:.2f}" for k, s in zip(classes, scores))

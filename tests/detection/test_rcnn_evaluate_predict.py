"""R-CNN (model 'rcnn', trained in stages) through scripts/evaluate.py and scripts/predict.py --images, on a tiny
run of every stage (test_rcnn_own_data's speed overrides, 8 + 4 generated shapes scenes, 6 fine-tuning steps):

* evaluate.py reproduces the metrics its evaluate stage wrote (rcnn/evaluation.json), ablations included,
  writes the COCO detections beside them and leaves the stage's record as it was;
* predict --images gives, per file, the detections of the evaluate stage's functions applied by hand
  (rcnn_regions + rcnn_inference with the run's SVMs and box regressors) to the file's image and its own
  selective-search proposals, mapped back to the original pixels by hand."""

import json
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from command_line import command_line_config
from PIL import Image
from test_rcnn_own_data import FAST

from vision_jax.data import pipeline, shapes
from vision_jax.data.info_without_data import known_info
from vision_jax.data.proposals import ProposalTable
from vision_jax.data.selective_search import selective_search
from vision_jax.models.rcnn.rcnn_inference import RCNNHeads, Variant, heads_for, postprocess, score_regions
from vision_jax.models.rcnn.rcnn_regions import batch_regions, make_region_forward, region_outputs
from vision_jax.models.rcnn.rcnn_run import RCNNRun
from vision_jax.models.rcnn.rcnn_stages import train_rcnn
from vision_jax.tasks.detection import DetectionTask
from vision_jax.train.folder_predictions import predict_folder

STEPS = 6
pytestmark = pytest.mark.slow  # trains every stage of a tiny run (~35 s)


@pytest.fixture(scope="module")
def tiny_run(repo_root, tmp_path_factory):
    """(config, workdir) of an R-CNN run whose every stage has finished."""
    seed = int(np.random.SeedSequence().entropy % 1000)
    print(f"tiny R-CNN run seed={seed}")
    root = tmp_path_factory.mktemp("rcnn")
    overrides = [*FAST, f"--config.data.data_dir={root / 'tfds'}", "--config.data.shapes_num_train=8",
                 "--config.data.shapes_num_test=4", f"--config.data.proposals_cache_dir={root / 'proposals'}",
                 f"--config.train.num_steps={STEPS}", "--config.train.log_every=3",
                 f"--config.seed={seed}"]  # fmt: skip
    config = command_line_config(repo_root, "configs/detection/shapes_rcnn.py", *overrides)
    workdir = str(root / "run")
    train_rcnn(config, workdir)
    return command_line_config(repo_root, "configs/detection/shapes_rcnn.py", *overrides), workdir


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_evaluate_script_reproduces_the_evaluate_stage(repo_root, tiny_run):
    _, workdir = tiny_run
    record = {name: _read(os.path.join(workdir, name)) for name in ("metrics.jsonl", "rcnn/evaluation.json")}
    done = subprocess.run(
        [sys.executable, os.path.join(repo_root, "scripts/evaluate.py"), f"--workdir={workdir}"],
        env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    printed = json.loads(done.stdout[done.stdout.index("{"):])
    stage = json.loads(record["rcnn/evaluation.json"])["metrics"]
    assert (printed.pop("step"), printed.pop("split")) == (STEPS, "test")
    assert set(printed) == set(stage) and {"AP50", "softmax_AP50", "svm_AP50"} <= set(stage)
    for key, value in stage.items():
        assert printed[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert os.path.isfile(os.path.join(workdir, "eval", f"step_{STEPS:08d}_detections_coco.json"))
    assert {name: _read(os.path.join(workdir, name)) for name in record} == record  # the stage's record stays


def _hand_detections(run, image):
    """The evaluate stage's functions on one image (batch of 1): the pipeline with a table holding the image's
    selective search, the CNN on every warped proposal, SVM scores, box regression, NMS; boxes mapped back to
    the original pixels by the batch's scale."""
    s, config = run.settings, run.config
    boxes = selective_search(image, strategy=config.data.selective_search_strategy,
                             max_proposals=int(config.data.max_proposals))  # fmt: skip
    table = ProposalTable({0: boxes}, {0: np.zeros(len(boxes), np.float32)}, "by hand")
    info = known_info(config.data)
    preprocess = DetectionTask(config).preprocess(info, False, proposal_table=table)
    (batch,) = list(pipeline.eval_batches(_example_of(image), preprocess, batch_size=1))
    images, sizes = run.regions_of(batch)
    regions = batch_regions(batch, include_ground_truth=False)
    forward = make_region_forward(run.model, s)
    outputs = region_outputs(forward, run.variables(), images, sizes, regions, s.regions_per_call)
    variant = Variant(s.test_scorer, s.test_box_regression)
    heads = heads_for(RCNNHeads.load(run.path("svm.npz"), run.path("box_regression.npz")), variant)
    scores, class_boxes = score_regions({k: jnp.asarray(v) for k, v in outputs.items()}, jnp.asarray(regions.boxes),
                                        {k: jnp.asarray(v) for k, v in heads.items()}, variant.scorer,
                                        variant.box_regression)  # fmt: skip
    found = postprocess(regions, np.asarray(scores), np.asarray(class_boxes), 1, batch["proposals"].shape[1],
                        np.asarray(sizes), s)  # fmt: skip
    valid = found["valid"][0].astype(bool)
    order = np.argsort(-found["scores"][0][valid], kind="stable")
    height, width, scale_y, scale_x = np.asarray(batch["image_info"][0], np.float64)
    original = found["boxes"][0][valid][order] / np.array([scale_x, scale_y, scale_x, scale_y])
    original = np.clip(original, 0, [width, height, width, height])
    return original, found["scores"][0][valid][order], found["classes"][0][valid][order]


def _example_of(image):
    """A one-example dataset of the image's canonical example, no ground truth (as --images makes it)."""
    import tensorflow as tf

    one = {"image": image, "image_id": np.int64(0), "label": np.int64(0), "boxes": np.zeros((0, 4), np.float32),
           "classes": np.zeros((0,), np.int64), "is_crowd": np.zeros((0,), bool)}  # fmt: skip
    return tf.data.Dataset.from_tensors(one)


def test_predict_images_gives_the_evaluate_stage_detections_of_each_file(tiny_run, tmp_path, seed):
    config, workdir = tiny_run
    folder = tmp_path / "images"
    folder.mkdir()
    multi = shapes.VARIANTS["multi"]
    rng = np.random.default_rng(seed)
    for k, (rows, cols) in enumerate([(96, 128), (128, 80)]):  # two sizes: the resize scales each differently
        scene = shapes.generate_example(multi, 7, int(rng.integers(1000)))["image"]
        Image.fromarray(np.ascontiguousarray(scene[:rows, :cols])).save(folder / f"scene{k}.png")
    with pytest.raises(ValueError, match="--workdir"):
        predict_folder(config, None, str(folder), str(tmp_path / "nowhere"))
    output = tmp_path / "out"
    summary = predict_folder(config, workdir, str(folder), str(output))
    assert summary["images"] == 2 and "selective search" in summary["proposals"]
    with open(output / "predictions.jsonl") as f:
        rows = [json.loads(line) for line in f]
    names = known_info(config.data).class_names
    run = RCNNRun(config, workdir)
    total = 0
    for row in rows:
        image = np.asarray(Image.open(folder / row["file"]).convert("RGB"))
        boxes, scores, classes = _hand_detections(run, image)
        assert len(row["detections"]) == len(boxes), (row["file"], seed)
        np.testing.assert_allclose([d["box"] for d in row["detections"]], boxes.reshape(-1, 4), atol=0.011)
        np.testing.assert_allclose([d["score"] for d in row["detections"]], scores, rtol=1e-4, atol=1e-4)
        assert [d["class"] for d in row["detections"]] == [names[c] for c in classes]
        assert os.path.isfile(output / f"{row['file']}.picture.png")
        total += len(boxes)
    print(f"seed={seed}: {total} detections equal the hand-applied evaluate stage")
    assert total > 0, f"seed={seed}: no detection to compare"


def test_a_run_with_a_stage_missing_is_refused_naming_it_and_the_command(tiny_run, tmp_path, rng):
    from vision_jax.models.rcnn.rcnn_detector import folder_inference
    from vision_jax.models.rcnn.rcnn_evaluation import evaluate_rcnn
    from vision_jax.models.rcnn.rcnn_run import STAGES

    config, workdir = tiny_run
    shutil.copytree(os.path.join(workdir, "rcnn"), tmp_path / "rcnn")
    stages_file = tmp_path / "rcnn" / "stages.json"
    stages = json.loads(stages_file.read_text())
    missing = STAGES[int(rng.integers(STAGES.index("evaluate")))]
    del stages[missing]
    stages_file.write_text(json.dumps(stages))
    for call in (lambda: evaluate_rcnn(config, str(tmp_path)), lambda: folder_inference(config, str(tmp_path), None)):
        with pytest.raises(FileNotFoundError, match=rf"stages \['{missing}'\].*scripts/train.py"):
            call()

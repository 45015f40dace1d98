"""Each task's `draw`: what a person reads in its pictures (verdict bands, misses, panels, legends),
on random images, labels and predictions from a fresh seed."""

import numpy as np

from vision_jax import viz
from vision_jax.data.dataset_info import DatasetInfo
from vision_jax.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from vision_jax.tasks.classification import ClassificationTask
from vision_jax.tasks.detection import DetectionTask
from vision_jax.tasks.localization import LocalizationTask
from vision_jax.tasks.reconstruction import ReconstructionTask
from vision_jax.tasks.segmentation import SegmentationTask
from vision_jax.train.config import base_config

from test_viz_drawing import random_box, ring_pixels

NAMES = ("circle", "square", "triangle", "star", "cross")


def dataset_info(*fields: str) -> DatasetInfo:
    return DatasetInfo(
        name="x", num_classes=len(NAMES), class_names=NAMES, num_examples={}, image_shape=(None, None, 3),
        has=frozenset(fields), segmentation_class_names=("background", *NAMES),
    )


def normalized(images_uint8: np.ndarray) -> np.ndarray:
    """What the pipelines feed the model (the inverse of viz.to_uint8)."""
    return ((images_uint8 / 255.0 - np.asarray(IMAGENET_MEAN_RGB)) / np.asarray(IMAGENET_STD_RGB)).astype(np.float32)


def logits_for(predicted: np.ndarray, rng) -> np.ndarray:
    logits = rng.normal(size=(len(predicted), len(NAMES))).astype(np.float32)
    logits[np.arange(len(predicted)), predicted] += 50.0  # probability 1.00
    return logits


def test_classification_band_is_red_for_a_wrong_prediction_and_names_the_true_class(rng, seed):
    images = normalized(rng.integers(0, 256, (3, 64, 64, 3)))
    images[2] = images[1]
    label = int(rng.integers(len(NAMES)))
    wrong, other_truth = (label + 1) % len(NAMES), (label + 2) % len(NAMES)
    task, info = ClassificationTask(base_config("classification")), dataset_info("label")
    predicted = np.array([label, wrong, wrong])
    batch = {"image": images, "label": np.array([label, label, other_truth])}
    pictures = task.draw(batch, {"logits": logits_for(predicted, rng)}, info)
    for picture, colour, image in zip(pictures, [viz.CORRECT_RGB, viz.ERROR_RGB, viz.ERROR_RGB], images):
        assert np.all(picture[0] == colour), f"seed={seed}: band {picture[0, 0]}, want {colour}"
        assert picture.shape[1] == 256 and picture.shape[0] > 256, f"seed={seed}: {picture.shape}"
        np.testing.assert_array_equal(picture[-256:], viz.upscale(viz.to_uint8(image))[0], err_msg=f"seed={seed}")
    # Same image, same wrong prediction, another true class: only the band's text differs.
    top = pictures[1].shape[0] - 256
    assert np.any(pictures[1][:top] != pictures[2][:top]), f"seed={seed}: the true class is not written"


def test_localization_wrong_class_is_flagged_and_its_true_box_marked_missed(rng, seed):
    size = 64
    images = rng.integers(0, 200, (2, size, size, 3))  # never the red of ERROR_RGB
    boxes = np.stack([random_box(rng, size, min_side=16) for _ in range(2)]).astype(np.float32)
    label = int(rng.integers(len(NAMES)))
    predicted = np.array([label, (label + 1) % len(NAMES)])
    task, info = LocalizationTask(base_config("localization")), dataset_info("label", "boxes")
    batch = {"image": normalized(images), "label": np.array([label, label]), "box_xyxy": boxes}
    predicted_boxes = boxes + rng.uniform(-1, 1, boxes.shape).astype(np.float32)
    pictures = task.draw(batch, {"logits": logits_for(predicted, rng), "boxes": predicted_boxes}, info)
    images = images.astype(np.uint8)
    for picture, image, box, predicted_box, klass in zip(pictures, images, boxes, predicted_boxes, predicted):
        correct = klass == label
        iou = viz.pairwise_iou(predicted_box[None], box[None])[0, 0]
        assert iou >= 0.5, f"seed={seed}: IoU {iou}"
        assert np.all(picture[0] == (viz.CORRECT_RGB if correct else viz.ERROR_RGB)), f"seed={seed}"
        # The same drawing (for its geometry and captions): the title as the task writes it.
        title, band = viz.verdict_title(NAMES[label], f"{NAMES[klass]} 1.00", correct, f", IoU {iou:.2f}")
        canvas = viz.draw_detections(
            image, predicted_box[None], np.ones(1), np.array([klass]), box[None], np.array([label]), NAMES,
            title=title, title_rgb=band,
        )
        assert np.array_equal(picture[: canvas.pixels.shape[0]], canvas.finish()), f"seed={seed}"
        red = np.all(ring_pixels(picture, canvas, box) == viz.ERROR_RGB, axis=-1).mean()
        assert (red >= 0.3) if not correct else (red == 0), f"seed={seed}: correct={correct}, red {red:.2f}"


def test_detection_draws_valid_detections_above_the_threshold_and_marks_the_objects_they_miss(rng, seed):
    config = base_config("detection")
    config.data.image_size = canvas_size = 128
    height, width = (int(v) for v in rng.integers(64, canvas_size + 1, 2))
    info = dataset_info("boxes")
    truth = np.zeros((1, 6, 4), np.float32)
    side = min(height, width) // 2
    offsets = ([0, 0] * 2, [side, 0] * 2, [0, side] * 2)  # three quadrants: the objects do not overlap
    truth[0, :3] = [random_box(rng, side, min_side=10) + offset for offset in offsets]
    classes = np.full((1, 6), -1, np.int32)
    classes[0, :3] = rng.integers(len(NAMES), size=3)
    batch = {
        "image": normalized(rng.integers(0, 200, (1, canvas_size, canvas_size, 3))),
        "image_info": np.array([[height, width, 1.0, 1.0]], np.float32),
        "boxes": truth, "classes": classes, "valid": np.arange(6)[None] < 3, "is_crowd": np.zeros((1, 6), bool),
    }
    threshold = config.model.draw_score_threshold
    # Each object has a detection on its box with its class: the first valid and above the threshold,
    # the second below it, the third invalid (a padding row); a fourth, a duplicate of the first, scores
    # the threshold itself (drawn).
    predictions = {
        "boxes": np.concatenate([truth[:, :3], truth[:, :1]], 1),
        "classes": np.concatenate([classes[:, :3], classes[:, :1]], 1),
        "scores": np.array([[threshold + 0.1, threshold - 0.1, 0.99, threshold]], np.float32),
        "valid": np.array([[True, True, False, True]]),
    }
    picture = DetectionTask(config).draw(batch, predictions, info)[0]
    drawn = [0, 3]
    canvas = viz.draw_detections(
        viz.to_uint8(batch["image"][0][:height, :width]),
        predictions["boxes"][0, drawn], predictions["scores"][0, drawn], predictions["classes"][0, drawn],
        truth[0, :3], classes[0, :3], NAMES, truth_crowd=np.zeros(3, bool), min_score=threshold,
    )
    legend = [*viz.STYLE_LEGEND, *viz.class_legend([*predictions["classes"][0, drawn], *classes[0, :3]], NAMES)]
    np.testing.assert_array_equal(picture, canvas.finish(legend), err_msg=f"seed={seed}")
    assert picture.shape[1] == width * int(np.ceil(256 / min(height, width))), f"seed={seed}: padding not cut off"
    red = [np.all(ring_pixels(picture, canvas, box) == viz.ERROR_RGB, axis=-1).mean() for box in truth[0, :3]]
    assert red[0] == 0 and min(red[1:]) >= 0.3, f"seed={seed}: red share of each object's outline {red}"
    assert sorted(c.text for c in canvas.captions if c.text.startswith("MISSED")) == sorted(
        f"MISSED {NAMES[k]}" for k in classes[0, 1:3]
    ), f"seed={seed}"


def blocky_labels(rng, size: int, num_values: int) -> np.ndarray:
    """A label map of a few random rectangles (regions wide enough to have an inside)."""
    labels = np.zeros((size, size), np.int32)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - 4, 2)
        labels[y0 : y0 + rng.integers(4, size), x0 : x0 + rng.integers(4, size)] = rng.integers(1, num_values)
    return labels


def test_segmentation_panels_show_blended_regions_with_pure_colour_borders_and_a_legend(rng, seed):
    size, num_values = 16, 4  # background + classes 1..3 of the 6 values
    image = rng.integers(0, 256, (1, size, size, 3))
    truth, predicted = blocky_labels(rng, size, num_values)[None], blocky_labels(rng, size, num_values)[None]
    task, info = SegmentationTask(base_config("segmentation")), dataset_info("segmentation")
    picture = task.draw({"image": normalized(image), "segmentation": truth}, {"labels": predicted}, info)[0]
    factor = 256 // size
    side = size * factor
    base, _ = viz.upscale(viz.to_uint8(normalized(image)[0]))
    for (y, x), labels in zip(viz.panel_origins(3, side, side)[1:], [truth[0], predicted[0]]):
        panel = picture[y : y + side, x : x + side].astype(np.float64)
        up = viz.upscale(labels)[0]
        colours = viz.PALETTE[(up - 1) % len(viz.PALETTE)].astype(np.float64)
        # Inside a region (every pixel within `factor` has its label): half image, half class colour.
        padded = np.pad(up, factor, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * factor + 1,) * 2)
        inside = (windows.min((-2, -1)) == windows.max((-2, -1))) & (up > 0)
        blend = 0.5 * base[inside] + 0.5 * colours[inside]
        np.testing.assert_allclose(panel[inside], blend, atol=1.0, err_msg=f"seed={seed}")
        # On a region's border (a neighbour has another label): the class colour itself.
        border = (up > 0) & ((np.roll(up, 1, 0) != up) | (np.roll(up, 1, 1) != up))
        border[0], border[:, 0] = False, False  # np.roll wraps around
        np.testing.assert_array_equal(panel[border], colours[border], err_msg=f"seed={seed}")
        np.testing.assert_array_equal(panel[up == 0], base[up == 0], err_msg=f"seed={seed}")
    legend = picture[viz.panel_origins(3, side, side)[0][0] + side :].reshape(-1, 3)
    shown = set(np.unique(np.concatenate([truth.ravel(), predicted.ravel()]))) - {0}
    for value in range(1, len(NAMES) + 1):
        in_legend = np.all(legend == viz.color(value - 1), axis=-1).any()
        assert in_legend == (value in shown), f"seed={seed}: value {value}, shown {shown}"


def test_reconstruction_shows_input_beside_reconstruction_under_captions(rng, seed):
    targets = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    noise = np.array([0.05, 0.2])[:, None, None, None]  # PSNRs about 12 dB apart
    reconstructions = np.clip(targets + rng.normal(0, 1, targets.shape) * noise, 0, 1).astype(np.float32)
    task = ReconstructionTask(base_config("reconstruction"))
    pictures = task.draw({"target": targets}, {"reconstruction": reconstructions}, None)
    side = 256
    origins = viz.panel_origins(2, side, side)
    to_uint8 = lambda x: np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    for picture, target, reconstruction in zip(pictures, targets, reconstructions):
        assert picture.shape == (origins[0][0] + side, origins[1][1] + side, 3), f"seed={seed}"
        for (y, x), panel in zip(origins, [target, reconstruction]):
            expected = viz.upscale(to_uint8(panel.astype(np.float64)))[0]  # the task rounds in float64
            np.testing.assert_array_equal(picture[y:, x : x + side], expected, err_msg=f"seed={seed}")
            title = picture[:y, x : x + side].reshape(-1, 3)
            assert np.any(np.all(title == viz.WHITE, axis=-1)), f"seed={seed}: no caption over the panel at x={x}"
    # The captions differ between pictures only by their PSNR.
    assert np.any(pictures[0][: origins[0][0], origins[1][1] :] != pictures[1][: origins[0][0], origins[1][1] :])

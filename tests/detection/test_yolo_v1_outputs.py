"""YOLOv1's output layer: sigmoid / softmax by default, the paper's linear layer on request, and
decoding of linear outputs clipped to [0, 1]; checked against NumPy on the same parameters."""

import jax
import numpy as np
import pytest

from vision_jax.models.backbones import ResNet
from vision_jax.models.yolo.settings import YOLOv1Settings
from vision_jax.models.yolo.v1 import YOLOv1

SIZE, GRID, BOXES, CLASSES = 64, 4, 2, 3


def model(linear: bool) -> YOLOv1:
    backbone = ResNet(stage_sizes=(1, 1, 1), block="basic", width=4, stem="cifar")
    settings = YOLOv1Settings(
        grid_size=GRID, boxes_per_cell=BOXES, feature="C4", head_channels=8, fc_dim=16, dropout=0.0,
        linear_outputs=linear, score_threshold=0.0,
    )  # fmt: skip
    return YOLOv1(backbone=backbone, num_classes=CLASSES, settings=settings)


def test_linear_outputs_are_the_raw_layer_and_the_default_squashes_them(rng, seed):
    images = rng.uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    linear, squashed = model(True), model(False)
    variables = squashed.init(jax.random.PRNGKey(seed % 2**31), images)
    raw = linear.apply(variables, images, False, method=YOLOv1.forward)
    raw_boxes, raw_conf, raw_classes = (np.asarray(raw[k], np.float64) for k in ("boxes", "confidences", "class_probs"))
    squashed_outputs = squashed.apply(variables, images, False, method=YOLOv1.forward)
    boxes, conf, classes = (squashed_outputs[k] for k in ("boxes", "confidences", "class_probs"))
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    softmax = np.exp(raw_classes - raw_classes.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    assert raw_boxes.shape == (2, GRID, GRID, BOXES, 4) and raw_classes.shape == (2, GRID, GRID, CLASSES)
    np.testing.assert_allclose(np.asarray(boxes), sigmoid(raw_boxes), rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}")
    np.testing.assert_allclose(np.asarray(conf), sigmoid(raw_conf), rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}")
    np.testing.assert_allclose(np.asarray(classes), softmax, rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}")
    assert raw_classes.min() < 0 or raw_classes.max() > 1, f"seed={seed}: raw outputs should leave [0, 1]"


def test_linear_outputs_decode_with_clipped_confidences_and_classes(rng, seed):
    images = rng.uniform(0, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    linear = model(True)
    variables = linear.init(jax.random.PRNGKey(seed % 2**31), images)
    raw = linear.apply(variables, images, False, method=YOLOv1.forward)
    conf, classes = (np.asarray(raw[k], np.float64) for k in ("confidences", "class_probs"))
    scores = np.clip(conf, 0, 1)[..., None] * np.clip(classes, 0, 1)[:, :, :, None, :]  # [1, S, S, B, C]
    out = linear.apply(variables, images)
    got = np.asarray(out["scores"])[np.asarray(out["valid"])]
    assert got.min() >= 0.0 and got.max() <= 1.0, f"seed={seed}"
    # Greedy NMS keeps the best box, and every kept score is one of the clipped products.
    np.testing.assert_allclose(got.max(), scores.max(), rtol=1e-5, err_msg=f"seed={seed}")
    nearest = np.abs(got[:, None] - scores.reshape(1, -1)).min(1)
    assert nearest.max() <= 1e-5 * max(1.0, scores.max()), f"seed={seed}"


def conv_model(grid: int) -> YOLOv1:
    backbone = ResNet(stage_sizes=(1, 1, 1), block="basic", width=4, stem="cifar")
    settings = YOLOv1Settings(grid_size=grid, boxes_per_cell=BOXES, feature="C4", head_channels=8,
                              output_layer="convolutional")  # fmt: skip
    return YOLOv1(backbone=backbone, num_classes=CLASSES, settings=settings)


@pytest.mark.parametrize("grid", [8, 16])
def test_the_convolutional_output_is_one_1x1_layer_shared_by_every_cell(rng, seed, grid):
    """Every cell's raw outputs are the same affine map of the last conv's features at that cell
    (NumPy float64 on the captured features); the map is brought to S x S by the second conv's
    stride, 2 from a 2S x 2S feature map (this backbone's C4 of the 64 px input is 16 x 16) and 1 from S x S."""
    images = rng.uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    conv = conv_model(grid)
    variables = conv.init(jax.random.PRNGKey(seed % 2**31), images)
    raw, state = conv.apply(variables, images, False, method=YOLOv1Head_outputs, capture_intermediates=True)
    features = np.asarray(state["intermediates"]["head"]["conv4"]["__call__"][0], np.float64)  # [2, S, S, c]
    assert features.shape[1:3] == (grid, grid), f"seed={seed}"
    output = variables["params"]["head"]["output"]
    kernel, bias = (np.asarray(output[k], np.float64) for k in ("kernel", "bias"))
    want = features @ kernel[0, 0] + bias  # [2, S, S, 5 B + C]
    np.testing.assert_allclose(np.asarray(raw, np.float64), want, rtol=1e-4, atol=1e-5, err_msg=f"seed={seed}")


def test_the_convolutional_output_refuses_a_feature_map_off_the_grid():
    images = np.zeros((1, SIZE, SIZE, 3), np.float32)  # C4: 16 x 16, neither S = 3 nor 2S = 6
    message = r"needs a feature map of S x S or 2S x 2S cells \(S = grid_size = 3\), got \(16, 16\)"
    with pytest.raises(ValueError, match=message):
        conv_model(3).init(jax.random.PRNGKey(0), images)


def YOLOv1Head_outputs(model: YOLOv1, images, train):  # noqa: N802
    """The head's raw [B, S, S, 5 B + C] outputs (before sigmoid / softmax)."""
    from vision_jax.models.classifier import select_feature

    return model.head(select_feature(model.backbone(images, train=train), "C4", "feature"), train)

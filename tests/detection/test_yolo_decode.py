"""YOLO decoding against the float64 NumPy reference: box decoding, class-specific scores, clipping,
score threshold, pre-NMS top-k, per-class greedy NMS and top-k, through the models' own test path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yolo_reference as ref

from vision_jax.models.backbones.darknet import Darknet
from vision_jax.models.yolo.v1 import YOLOv1
from vision_jax.models.yolo.v3 import YOLOv3
from vision_jax.ops.yolo_decode import yolo_detections
from vision_jax.ops.yolo_targets import yolo_v1_boxes_to_xyxy, yolo_v3_decode, yolo_v3_layout

SIZE = 64
PRIORS = (
    (5.0, 7.0),
    (9.0, 6.0),
    (8.0, 12.0),
    (14.0, 10.0),
    (12.0, 20.0),
    (20.0, 14.0),
    (22.0, 26.0),
    (34.0, 24.0),
    (40.0, 44.0),
)
MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))


def assert_detections_equal(got, want, seed, image):
    boxes, scores, classes, valid = (np.asarray(a) for a in got)
    count = int(valid.sum())
    assert count == len(want), f"seed={seed} image {image}: {count} detections, reference {len(want)}"
    assert valid[:count].all() and not valid[count:].any()
    np.testing.assert_allclose(scores[:count], [w[1] for w in want], rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(classes[:count], [w[2] for w in want], err_msg=f"seed={seed}")
    np.testing.assert_allclose(
        boxes[:count], np.reshape([w[0] for w in want], (-1, 4)), atol=1e-3, err_msg=f"seed={seed}"
    )
    assert not boxes[count:].any() and not scores[count:].any()


@pytest.mark.parametrize("pre_nms_topk", [60, 10_000])
def test_yolo_detections_match_numpy(rng, seed, pre_nms_topk):
    num_boxes, num_classes = 80, 3
    centres = rng.uniform(-5, 70, size=(num_boxes, 2))  # some boxes cross the border (clipped)
    sizes = rng.uniform(4, 30, size=(num_boxes, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    scores = rng.random((num_boxes, num_classes)).astype(np.float32) ** 2
    height, width = 60.0, 64.0
    fn = jax.jit(lambda b, s: yolo_detections(b, s, jnp.asarray([height, width]), score_threshold=0.05,
                                              nms_threshold=0.45, max_detections=25, pre_nms_topk=pre_nms_topk))  # fmt: skip
    want = ref.detections(boxes, scores, height, width, 0.05, 0.45, 25, pre_nms_topk)
    assert_detections_equal(fn(boxes, scores), want, seed, 0)


def test_v1_model_detections_match_numpy(rng, seed):
    model = YOLOv1(
        backbone=Darknet(stage_sizes=(1, 1, 1, 1, 1), width=4), num_classes=3, grid_size=4, boxes_per_cell=2, head_channels=8, fc_dim=16,
        score_threshold=0.02, nms_threshold=0.5, max_detections=20, pre_nms_topk=40,
    )  # fmt: skip
    images = jnp.asarray(rng.normal(size=(2, SIZE, SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(seed, impl="rbg"))
    # A wider output layer than at initialisation, so that scores and boxes vary widely.
    head = dict(variables["params"]["head"])
    head["fc2"] = jax.tree.map(lambda p: p * 100.0, head["fc2"])
    variables = {**variables, "params": {**variables["params"], "head": head}}
    sizes = jnp.asarray([[SIZE, SIZE], [50.0, 40.0]])
    (boxes, confidences, probs), out = jax.jit(
        lambda v: (model.apply(v, images, False, method="outputs"), model.apply(v, images, sizes, train=False))
    )(variables)
    for b in range(2):
        grid = np.asarray(boxes[b], np.float64)
        xyxy = np.array(
            [ref.v1_box_xyxy(grid[i, j, k], i, j, 4, SIZE, SIZE) for i in range(4) for j in range(4) for k in range(2)]
        )
        np.testing.assert_allclose(
            np.asarray(yolo_v1_boxes_to_xyxy(boxes[b], (SIZE, SIZE))).reshape(-1, 4), xyxy, atol=1e-4
        )
        scores = (
            np.asarray(confidences[b], np.float64)[..., None] * np.asarray(probs[b], np.float64)[:, :, None, :]
        ).reshape(-1, 3)
        want = ref.detections(xyxy, scores, float(sizes[b, 0]), float(sizes[b, 1]), 0.02, 0.5, 20, 40)
        assert_detections_equal([out[k][b] for k in ("boxes", "scores", "classes", "valid")], want, seed, b)


def test_v3_model_decoding_and_detections_match_numpy(rng, seed):
    model = YOLOv3(
        backbone=Darknet(stage_sizes=(1, 1, 1, 1, 1), width=4), num_classes=3, priors=PRIORS, masks=MASKS, neck_channels=16,
        score_threshold=0.003, nms_threshold=0.45, max_detections=30, pre_nms_topk=200,
    )  # fmt: skip
    images = jnp.asarray(rng.normal(size=(2, SIZE, SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(seed, impl="rbg"))
    # Raw outputs of a larger spread than at initialisation, so that scores and boxes vary widely.
    params = jax.tree.map(lambda p: p * 10.0 if p.ndim == 4 and p.shape[-1] == 3 * 8 else p, variables["params"])
    variables = {**variables, "params": params}

    def run(v):
        levels = model.apply(v, images, False, method="raw_outputs")
        decoded = model.apply(v, levels, images, method="decode_levels")
        return levels, decoded, model.apply(v, images, None, train=False)

    levels, decoded, out = jax.jit(run)(variables)
    layout = yolo_v3_layout([lv.shape[1:3] for lv in levels], PRIORS, MASKS)
    flat = jnp.concatenate([lv.reshape(2, -1, 8) for lv in levels], axis=1)
    for b in range(2):
        raw_levels = [np.asarray(lv[b]) for lv in levels]
        boxes = ref.v3_decode(raw_levels, PRIORS, MASKS, (32, 16, 8))
        np.testing.assert_allclose(np.asarray(decoded[b]), boxes, rtol=1e-5, atol=1e-3, err_msg=f"seed={seed}")
        np.testing.assert_allclose(
            np.asarray(yolo_v3_decode(flat[b], layout, (32, 16, 8))), boxes, rtol=1e-5, atol=1e-3
        )
        raw = np.asarray(flat[b], np.float64)
        scores = ref.sigmoid(raw[:, 4:5]) * ref.sigmoid(raw[:, 5:])
        want = ref.detections(boxes, scores, SIZE, SIZE, 0.003, 0.45, 30, 200)
        assert len(want) >= 5, f"seed={seed}: only {len(want)} reference detections"
        assert_detections_equal([out[k][b] for k in ("boxes", "scores", "classes", "valid")], want, seed, b)

"""YOLO v1 and v3 through the detector contract (vision_jax/models/detector.py) against the float64
NumPy reference (yolo_reference.py), on the models' own raw outputs: training losses and metrics
(assignment on the canvas, per-image sums averaged over the batch), box decoding, class-specific
scores and detections (clip, threshold, pre-NMS top-k, per-class NMS, top K)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yolo_reference as ref

from vision_jax.models.backbones.darknet import Darknet
from vision_jax.models.yolo.settings import YOLOv1Settings, YOLOv3Settings
from vision_jax.models.yolo.v1 import YOLOv1
from vision_jax.models.yolo.v3 import YOLOv3

SIZE, BATCH, CLASSES = 64, 2, 3
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
STRIDES = (32, 16, 8)
SHAPES = ((2, 2), (4, 4), (8, 8))


def tiny_backbone():
    return Darknet(stage_sizes=(1, 1, 1, 1, 1), width=4)


def random_targets(rng, count=6):
    """targets of the contract: boxes of 4-40 px, one padding row and one crowd row per image."""
    centres = rng.uniform(4, SIZE - 4, size=(BATCH, count, 2))
    sizes = rng.uniform(4, 40, size=(BATCH, count, 2))
    valid = np.ones((BATCH, count), bool)
    valid[:, -1] = False
    crowd = np.zeros((BATCH, count), bool)
    crowd[:, 0] = True
    return {
        "boxes": np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32),
        "classes": rng.integers(0, CLASSES, (BATCH, count)).astype(np.int32),
        "valid": valid,
        "is_crowd": crowd,
    }


def assert_detections_equal(got, want, seed, image):
    boxes, scores, classes, valid = (np.asarray(got[key][image]) for key in ("boxes", "scores", "classes", "valid"))
    count = int(valid.sum())
    assert count == len(want), f"seed={seed} image {image}: {count} detections, reference {len(want)}"
    assert valid[:count].all() and not valid[count:].any()
    np.testing.assert_allclose(scores[:count], [w[1] for w in want], rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_array_equal(classes[:count], [w[2] for w in want], err_msg=f"seed={seed}")
    np.testing.assert_allclose(
        boxes[:count], np.reshape([w[0] for w in want], (-1, 4)), atol=1e-3, err_msg=f"seed={seed}"
    )
    assert not boxes[count:].any() and not scores[count:].any()


# ----------------------------------------------------------------------------- v1
V1 = YOLOv1Settings(
    grid_size=4, boxes_per_cell=2, head_channels=8, fc_dim=16, score_threshold=0.02, nms_threshold=0.5,
    max_detections=20, pre_nms_topk=40,
)  # fmt: skip


def v1_model_and_variables(rng, seed):
    model = YOLOv1(backbone=tiny_backbone(), num_classes=CLASSES, settings=V1)
    images = jnp.asarray(rng.normal(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images))(jax.random.key(seed, impl="rbg"))
    # A wider output layer than at initialisation, so that scores and boxes vary widely.
    head = dict(variables["params"]["head"])
    head["fc2"] = jax.tree.map(lambda p: p * 100.0, head["fc2"])
    return model, images, {**variables, "params": {**variables["params"], "head": head}}


def float32_ambiguous(outputs, targets) -> bool:
    """Whether some object cell's choice of the responsible box is below float32's resolution: its best
    IoU positive but < 1e-6 (the rule switches to the RMSE fallback at IoU 0; seed 1608834754 had a
    1e-12-wide box with IoU 5e-12 in float64, 0 in float32) or its two best IoUs within 1e-6."""
    for b in range(BATCH):
        pred = np.asarray(outputs["boxes"][b], np.float64)
        t = ref.v1_targets(pred, *(targets[k][b] for k in ("boxes", "classes", "valid", "is_crowd")), SIZE, SIZE, CLASSES)
        grid = pred.shape[0]
        for row, col in zip(*np.nonzero(t["object_cells"])):
            box = np.asarray(targets["boxes"][b][t["gt_index"][row, col]], np.float64)
            ious = sorted(ref.iou(ref.v1_box_xyxy(p, row, col, grid, SIZE, SIZE), box) for p in pred[row, col])
            if 0 < ious[-1] < 1e-6 or ious[-1] - ious[-2] < 1e-6 < ious[-1]:
                return True
    return False


def test_v1_train_losses_and_metrics_match_numpy(rng, seed):
    model, images, variables = v1_model_and_variables(rng, seed)
    rngs = {"sampling": jax.random.key(seed + 1, impl="rbg")}  # the same dropout mask in both calls
    forward = jax.jit(lambda v: model.apply(v, images, True, method="forward", rngs=rngs, mutable=["batch_stats"])[0])
    for _ in range(20):  # targets whose responsible boxes float32 can decide (float32_ambiguous)
        targets = random_targets(rng)
        if not float32_ambiguous(forward(variables), targets):
            break
    else:
        pytest.fail(f"seed={seed}: no unambiguous targets in 20 draws")

    def run(v):
        outputs, _ = model.apply(v, images, True, method="forward", rngs=rngs, mutable=["batch_stats"])
        result, _ = model.apply(v, images, None, targets, train=True, rngs=rngs, mutable=["batch_stats"])
        return outputs, result

    outputs, result = jax.jit(run)(variables)
    assert set(result) == {"losses", "metrics"}
    want_losses, cells, iou_sum = [], [], 0.0
    for b in range(BATCH):
        boxes, confidences, probs = (np.asarray(outputs[k][b]) for k in ("boxes", "confidences", "class_probs"))
        t = ref.v1_targets(boxes, *(targets[k][b] for k in ("boxes", "classes", "valid", "is_crowd")),
                           SIZE, SIZE, CLASSES)  # fmt: skip
        want_losses.append(ref.v1_loss(boxes, confidences, probs, t, V1.lambda_coord, V1.lambda_noobj, V1.rescore))
        cells.append(t["object_cells"].sum())
        iou_sum += t["iou"].sum()
    assert sum(cells) >= 4, f"seed={seed}: too few object cells to test anything"
    for name in ("coord", "object", "no_object", "class"):
        want = np.mean([losses[name] for losses in want_losses])
        np.testing.assert_allclose(float(result["losses"][name]), want, rtol=1e-5, err_msg=f"{name} seed={seed}")
    np.testing.assert_allclose(float(result["metrics"]["object_cells_per_image"]), np.mean(cells), rtol=1e-6)
    np.testing.assert_allclose(float(result["metrics"]["responsible_mean_iou"]), iou_sum / sum(cells), rtol=1e-5)


def test_v1_detections_match_numpy(rng, seed):
    model, images, variables = v1_model_and_variables(rng, seed)
    sizes = jnp.asarray([[SIZE, SIZE], [50.0, 40.0]])
    outputs, out = jax.jit(
        lambda v: (model.apply(v, images, False, method="forward"), model.apply(v, images, sizes, train=False))
    )(variables)
    for b in range(BATCH):
        grid = np.asarray(outputs["boxes"][b], np.float64)
        xyxy = np.array(
            [ref.v1_box_xyxy(grid[i, j, k], i, j, 4, SIZE, SIZE) for i in range(4) for j in range(4) for k in range(2)]
        )
        scores = (
            np.asarray(outputs["confidences"][b], np.float64)[..., None]
            * np.asarray(outputs["class_probs"][b], np.float64)[:, :, None, :]
        ).reshape(-1, CLASSES)
        want = ref.detections(xyxy, scores, float(sizes[b, 0]), float(sizes[b, 1]), 0.02, 0.5, 20, 40)
        assert_detections_equal(out, want, seed, b)


# ----------------------------------------------------------------------------- v3
V3 = YOLOv3Settings(
    priors=PRIORS, masks=MASKS, neck_channels=16, ignore_threshold=0.4, prior_iou_threshold=0.3, box_weight=1.5,
    class_weight=0.7, score_threshold=0.003, nms_threshold=0.45, max_detections=30, pre_nms_topk=200,
)  # fmt: skip


def v3_model_and_variables(rng, seed):
    model = YOLOv3(backbone=tiny_backbone(), num_classes=CLASSES, settings=V3)
    images = jnp.asarray(rng.normal(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images))(jax.random.key(seed, impl="rbg"))
    # Raw outputs of a larger spread than at initialisation, so that scores and boxes vary widely.
    params = jax.tree.map(
        lambda p: p * 10.0 if p.ndim == 4 and p.shape[-1] == 3 * (5 + CLASSES) else p, variables["params"]
    )
    return model, images, {**variables, "params": params}


def reference_levels(levels, b):
    """The model's per-level outputs of image b, and the same flattened [N, 5 + C] (float64)."""
    per_level = [np.asarray(level[b], np.float64) for level in levels]
    return per_level, np.concatenate([level.reshape(-1, 5 + CLASSES) for level in per_level])


def test_v3_train_losses_and_metrics_match_numpy(rng, seed):
    model, images, variables = v3_model_and_variables(rng, seed)
    targets = random_targets(rng)

    def run(v):
        levels, _ = model.apply(v, images, True, method="forward", mutable=["batch_stats"])
        result, _ = model.apply(v, images, None, targets, train=True, mutable=["batch_stats"])
        return levels, result

    levels, result = jax.jit(run)(variables)
    assert set(result) == {"losses", "metrics"}
    want_losses, assigned, ignored, iou_sum = [], [], [], 0.0
    for b in range(BATCH):
        per_level, raw = reference_levels(levels, b)
        pred_boxes = ref.v3_decode(per_level, PRIORS, MASKS, STRIDES)
        gt = [targets[k][b] for k in ("boxes", "classes", "valid", "is_crowd")]
        t = ref.v3_targets(pred_boxes, *gt, SHAPES, PRIORS, MASKS, STRIDES, SIZE, SIZE, CLASSES,
                           V3.ignore_threshold, V3.prior_iou_threshold)  # fmt: skip
        want_losses.append(ref.v3_loss(raw, t, V3.box_weight, V3.objectness_weight, V3.class_weight))
        assigned.append(t["assigned"].sum())
        ignored.append(t["ignored"].sum())
        iou_sum += t["max_iou"][t["assigned"]].sum()
    assert sum(assigned) >= 4, f"seed={seed}: only {sum(assigned)} assigned predictions"
    for name in ("box", "objectness", "class"):
        want = np.mean([losses[name] for losses in want_losses])
        np.testing.assert_allclose(float(result["losses"][name]), want, rtol=1e-5, err_msg=f"{name} seed={seed}")
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    np.testing.assert_allclose(metrics["assigned_per_image"], np.mean(assigned), rtol=1e-6, err_msg=f"seed={seed}")
    np.testing.assert_allclose(metrics["ignored_per_image"], np.mean(ignored), rtol=1e-6, err_msg=f"seed={seed}")
    np.testing.assert_allclose(metrics["assigned_mean_iou"], iou_sum / sum(assigned), rtol=1e-5, err_msg=f"seed={seed}")


def test_v3_decoding_and_detections_match_numpy(rng, seed):
    model, images, variables = v3_model_and_variables(rng, seed)

    def run(v):
        levels = model.apply(v, images, False, method="forward")
        _, boxes, _, _ = model.apply(v, levels, images, method="decode")
        return levels, boxes, model.apply(v, images, None, train=False)

    levels, decoded, out = jax.jit(run)(variables)
    for b in range(BATCH):
        per_level, raw = reference_levels(levels, b)
        boxes = ref.v3_decode(per_level, PRIORS, MASKS, STRIDES)
        np.testing.assert_allclose(np.asarray(decoded[b]), boxes, rtol=1e-5, atol=1e-3, err_msg=f"seed={seed}")
        scores = ref.sigmoid(raw[:, 4:5]) * ref.sigmoid(raw[:, 5:])
        want = ref.detections(boxes, scores, SIZE, SIZE, 0.003, 0.45, 30, 200)
        assert len(want) >= 5, f"seed={seed}: only {len(want)} reference detections"
        assert_detections_equal(out, want, seed, b)

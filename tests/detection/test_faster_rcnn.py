"""The whole Faster R-CNN flow (FPN and C4) against the float64 NumPy reference of each stage.

The networks' own layers are tested elsewhere (backbones, FPN, heads, RoI ops); here the wiring is
checked: anchors in the order of the RPN outputs, per-image proposal selection, the box head on
the proposals, post-processing, and the training targets and losses over a batch. With sample
sizes above the number of candidates and positive_fraction 1, sampling keeps every labelled
anchor / RoI, so the training losses are deterministic and a NumPy reference can recompute them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rcnn_reference as ref
from test_rpn import random_gt

from vision_jax.models.backbones import resnet18
from vision_jax.models.rcnn.faster_rcnn import FasterRCNN, FasterRCNNC4
from vision_jax.models.rcnn.settings import RCNNSettings

SIZE, RATIOS = 64, (0.5, 1.0, 2.0)
# Anchors of one area whose sides are powers of two: the areas are exact in float32 and float64 alike,
# so anchors inside a ground-truth box tie exactly in both (with ratios 0.5 and 2, a float32 product
# can round to a tie that float64 breaks, and the low-quality matches then differ).
EXACT_RATIOS = (0.25, 1.0, 4.0)
FPN_ANCHORS = ((8,), (16,), (32,), (64,), (128,))
C4_ANCHORS = ((16, 32, 64),)
# One block per stage: the backbone is not under test here, and its compilation dominates.
BACKBONE = resnet18(width=4).clone(stage_sizes=(1, 1, 1, 1))


def fpn_model(**overrides):
    settings = {
        "fpn_channels": 8,
        "box_head_fc_dim": 16,
        "anchor_sizes": FPN_ANCHORS,
        "rpn_pre_nms_topk_test": 60,
        "rpn_post_nms_topk_test": 50,
        "rpn_pre_nms_topk_train": 80,
        "rpn_post_nms_topk_train": 70,
        "test_max_detections": 30,
    }
    settings.update(overrides)
    return FasterRCNN(backbone=BACKBONE, num_classes=3, settings=RCNNSettings(**settings))


def c4_model(pooler_type):
    settings = RCNNSettings(
        anchor_sizes=C4_ANCHORS,
        rpn_pre_nms_topk_test=60,
        rpn_post_nms_topk_test=50,
        roi_pooler_resolution=6,
        roi_pooler_type=pooler_type,
        test_max_detections=30,
    )
    return FasterRCNNC4(
        backbone=BACKBONE.clone(stage_sizes=(1, 1, 1)),
        num_classes=3,
        settings=settings,
        res5_block="basic",
        res5_blocks=1,
        res5_width=32,
        res5_norm="batch",
    )


def spread_outputs(variables, rng):
    """Initial heads give near-equal scores; random larger output layers exercise ranking and NMS."""

    def scale(path, leaf):
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        if "kernel" in name and any(k in name for k in ("objectness", "deltas", "cls_score", "bbox_pred")):
            return jnp.asarray(rng.normal(0, 0.3 if "delta" in name or "bbox" in name else 1.0, leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(scale, variables)


def init(model, rng):
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((2, SIZE, SIZE, 3)), train=False))(
        jax.random.key(0, impl="rbg")
    )
    return spread_outputs(variables, rng)


def assert_same_detections_up_to_tied_scores(got, want_boxes, want_classes, where):
    """got: {'boxes' [K, 4], 'scores' [K], 'classes' [K]} by decreasing score; the reference's
    boxes and classes in its order. Where a saturated softmax gives several detections the same
    float32 score (1.0), they come by index, float64 orders them by value: within each run of
    equal scores, every detection must match a distinct reference detection (class, box)."""
    for score in np.unique(got["scores"]):
        rows = np.flatnonzero(got["scores"] == score)
        unmatched = list(rows)
        for i in rows:
            same = [j for j in unmatched if want_classes[j] == got["classes"][i]]
            close = [j for j in same if np.allclose(got["boxes"][i], want_boxes[j], rtol=0, atol=5e-4)]
            assert close, (
                f"{where}: detection {i} (class {got['classes'][i]}, box {got['boxes'][i]}, score {score}) "
                f"is not among the reference's rows {rows}: classes {want_classes[rows]}, boxes {want_boxes[rows]}"
            )
            unmatched.remove(close[0])


@pytest.mark.parametrize("variant", ["fpn", "c4_align", "c4_pool"])
def test_inference_equals_the_reference_pipeline(variant, rng, seed):
    model = fpn_model() if variant == "fpn" else c4_model(variant[3:])
    variables = init(model, rng)
    images = rng.normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    image_sizes = np.array([[56, 64], [64, 44]], np.float32)

    @jax.jit
    def run(variables, images, image_sizes):
        apply = functools.partial(model.apply, variables)
        features = apply(images, False, method="forward")
        rpn_outputs = apply(features, method="rpn_outputs")
        return features, rpn_outputs, apply(features, method="anchors"), apply(images, image_sizes, train=False)

    features, (logits, deltas), anchors, detections = run(variables, images, image_sizes)
    levels = (2, 3, 4, 5, 6) if variant == "fpn" else (4,)
    sizes = FPN_ANCHORS if variant == "fpn" else C4_ANCHORS
    want_anchors = [ref.anchors((-(-SIZE // 2**lv),) * 2, 2**lv, s, RATIOS) for lv, s in zip(levels, sizes)]
    for got, want in zip(anchors, want_anchors):
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"seed={seed} anchors")
    proposals = [
        ref.find_top_proposals(
            [lo[b] for lo in logits], [de[b] for de in deltas], want_anchors, image_sizes[b], 60, 50, 0.7
        )[0]
        for b in range(2)
    ]
    padded = np.stack([np.pad(p, ((0, 50 - len(p)), (0, 0))) for p in proposals]).astype(np.float32)
    cls_logits, box_deltas = jax.jit(lambda v, f, r: model.apply(v, f, r, False, method="box_outputs"))(
        variables, features, padded
    )
    for b in range(2):
        n = len(proposals[b])
        boxes, scores, classes = ref.fast_rcnn_inference(
            cls_logits[b, :n], box_deltas[b, :n], proposals[b], image_sizes[b], max_detections=30
        )
        found = int(np.sum(detections["valid"][b]))
        assert found == len(boxes), f"seed={seed} image {b}: {found} detections, reference {len(boxes)}"
        np.testing.assert_allclose(detections["scores"][b, :found], scores, rtol=1e-4, err_msg=f"seed={seed}")
        got = {key: np.asarray(detections[key][b, :found]) for key in ("boxes", "scores", "classes")}
        assert_same_detections_up_to_tied_scores(got, boxes, classes, f"seed={seed} image {b}")


def test_training_losses_equal_the_reference_and_proposals_carry_no_gradient(rng, seed):
    # Sample every labelled anchor (1023 at 64 x 64) and every RoI candidate (<= 70 + 6).
    model = fpn_model(
        rpn_num_samples=2048,
        rpn_positive_fraction=1.0,
        anchor_aspect_ratios=EXACT_RATIOS,
        roi_num_samples=128,
        roi_positive_fraction=1.0,
    )
    variables = init(model, rng)
    images = rng.normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    image_sizes = np.full((2, 2), SIZE, np.float32)
    gts = [random_gt(rng, n, 6 - n, SIZE) for n in (2, 5)]  # different object counts per image
    gt_boxes, gt_valid = np.stack([g[0] for g in gts]), np.stack([g[1] for g in gts])
    gt_classes = np.where(gt_valid, rng.integers(0, 3, gt_valid.shape), -1).astype(np.int32)
    targets = {"boxes": gt_boxes, "classes": gt_classes, "valid": gt_valid}

    @jax.jit
    def run(variables, key):
        def roi_loss(trained):  # gradients w.r.t. the RPN head and the FPN only
            params = {**variables["params"], **trained}
            out, _ = model.apply(
                {**variables, "params": params},
                images,
                image_sizes,
                targets,
                train=True,
                rngs={"sampling": key},
                mutable=["batch_stats"],
            )
            return out["losses"]["loss_cls"] + out["losses"]["loss_box_reg"], out

        trained = {k: variables["params"][k] for k in ("rpn_head", "fpn")}
        (_, out), grads = jax.value_and_grad(roi_loss, has_aux=True)(trained)
        features, _ = model.apply(variables, images, True, method="forward", mutable=["batch_stats"])
        rpn_outputs = model.apply(variables, features, method="rpn_outputs")
        return out["losses"], grads, features, rpn_outputs, model.apply(variables, features, method="anchors")

    losses, grads, features, (logits, deltas), anchors = run(variables, jax.random.PRNGKey(seed))
    assert all(np.all(g == 0) for g in jax.tree.leaves(grads["rpn_head"])), (
        f"seed={seed}: RoI losses reached the RPN head"
    )
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads["fpn"])), f"seed={seed}: RoI losses must train the FPN"

    all_anchors = np.concatenate(anchors).astype(np.float64)
    rpn_cls = rpn_loc = 0.0
    rois, roi_classes, roi_targets, roi_fg = [], [], [], []
    for b in range(2):
        gt, classes = gt_boxes[b][gt_valid[b]], gt_classes[b][gt_valid[b]]
        matched, labels = ref.match(ref.iou(gt, all_anchors), 0.7, 0.3, low_quality=True)
        lo, de = np.concatenate([l[b] for l in logits]), np.concatenate([d[b] for d in deltas])
        rpn_cls += ref.binary_cross_entropy(lo[labels >= 0], labels[labels >= 0] == 1).sum()
        rpn_loc += np.abs(de[labels == 1] - ref.encode(gt[matched[labels == 1]], all_anchors[labels == 1])).sum()
        proposals, _ = ref.find_top_proposals(
            [l[b] for l in logits], [d[b] for d in deltas], anchors, image_sizes[b], 80, 70, 0.7
        )
        candidates = np.concatenate([proposals, gt])
        matched, labels = ref.match(ref.iou(gt, candidates), 0.5, 0.5, low_quality=False)
        rois.append(candidates)
        roi_classes.append(np.where(labels == 1, classes[matched], 3))
        roi_targets.append(ref.encode(gt[matched], candidates, (10.0, 10.0, 5.0, 5.0)))
        roi_fg.append(labels == 1)
    normaliser = 2048 * 2
    np.testing.assert_allclose(losses["loss_rpn_cls"], rpn_cls / normaliser, rtol=1e-4, err_msg=f"seed={seed}")
    np.testing.assert_allclose(losses["loss_rpn_loc"], rpn_loc / normaliser, rtol=1e-4, err_msg=f"seed={seed}")

    padded = max(len(r) for r in rois)
    boxes = np.stack([np.pad(r, ((0, padded - len(r)), (0, 0))) for r in rois]).astype(np.float32)
    cls_logits, box_deltas = jax.jit(lambda v, f, r: model.apply(v, f, r, True, method="box_outputs"))(
        variables, features, boxes
    )
    ce, l1, count = 0.0, 0.0, 0
    for b in range(2):
        n, fg = len(rois[b]), roi_fg[b]
        ce += ref.cross_entropy(cls_logits[b, :n], roi_classes[b]).sum()
        l1 += np.abs(box_deltas[b, :n][np.flatnonzero(fg), roi_classes[b][fg]] - roi_targets[b][fg]).sum()
        count += n
    np.testing.assert_allclose(losses["loss_cls"], ce / count, rtol=1e-4, err_msg=f"seed={seed}")
    np.testing.assert_allclose(losses["loss_box_reg"], l1 / count, rtol=1e-3, err_msg=f"seed={seed}")


def test_bad_inputs_are_refused_by_name():
    model = fpn_model()
    init = lambda shape, **kw: jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), **kw))
    with pytest.raises(ValueError, match=r"multiple of 32, got \(48, 48\)"):
        init((1, 48, 48, 3), train=False)
    with pytest.raises(ValueError, match=r"image_sizes must be \[B, 2\]"):
        init((2, 64, 64, 3), image_sizes=jnp.zeros((2, 3)), train=False)
    with pytest.raises(ValueError, match="training needs targets="):
        jax.eval_shape(
            lambda: model.init(
                {"params": jax.random.key(0), "sampling": jax.random.key(1)}, jnp.zeros((1, 64, 64, 3)), train=True
            )
        )
    with pytest.raises(ValueError, match=r"roi_pooler_type='max' is not one of \('align', 'pool'\)"):
        jax.eval_shape(lambda: c4_model("max").init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    with pytest.raises(ValueError, match=r"roi_pooler_type='pool' is not 'align': faster_rcnn \(FPN\)"):
        pooling = fpn_model(roi_pooler_type="pool")
        jax.eval_shape(lambda: pooling.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    with pytest.raises(ValueError, match=r"anchor_sizes=.* needs 1 level \(C4\)"):
        two_levels = c4_model("align").clone(settings=RCNNSettings(anchor_sizes=((16,), (32,))))
        jax.eval_shape(lambda: two_levels.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    with pytest.raises(ValueError, match="stride 4"):
        cifar = model.clone(backbone=resnet18(width=4, stem="cifar"))
        jax.eval_shape(lambda: cifar.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))


@pytest.mark.parametrize("variant", ["fpn", "c4"])
def test_parameter_names_are_those_of_saved_checkpoints(variant):
    model = fpn_model() if variant == "fpn" else c4_model("align")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
    params = shapes["params"]
    heads = {
        "rpn_head": {"conv", "objectness", "deltas"},
        "box_head": {"fc1", "fc2", "predictor"} if variant == "fpn" else {"res5", "predictor"},
    }
    if variant == "fpn":
        heads["fpn"] = {f"{kind}{level}" for kind in ("lateral", "output") for level in (2, 3, 4, 5)}
    assert set(params) == {"backbone", *heads}
    for name, children in heads.items():
        assert set(params[name]) == children, name
    assert set(params["box_head"]["predictor"]) == {"cls_score", "bbox_pred"}

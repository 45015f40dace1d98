"""Every detector of the model table keeps the one contract (vision_jax/models/detector.py).

Specification, for each detection model, built through the table from a tiny config:
* init(images, image_sizes, train=False) makes the parameters without running the decoding;
* apply(v, images, image_sizes, targets, train=True) -> {'losses': {...}, 'metrics': {...}},
  every value a finite float32 scalar, at least one loss depending on the parameters;
* apply(v, images, image_sizes, train=False) -> boxes float32 [B, K, 4], scores float32 [B, K],
  classes int32 [B, K] in 0..C-1, valid bool [B, K] (and, for instance segmentation, masks float32
  [B, K, M, M] probabilities), K = the family's max_detections; with score
  threshold 0 there are detections, valid rows come first, lie inside the image and are sorted by
  decreasing score, padding rows are zero;
* the jitted train step compiles once whatever the number of objects in the batch;
* training without targets is refused with a message that names them;
* given proposals (targets 'proposals' / 'proposal_valid' / 'proposal_scores') travel in training and
  inference: a detector that takes them (Fast R-CNN) pools them, every other one ignores them.
A detector added to the table without a TINY entry below fails here, on purpose.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.detector import proposals_from_batch
from vision_jax.models.table import MODELS
from vision_jax.train.config import base_config

# A staged model (R-CNN: ModelSpec.trainer) is not one module on this contract: its CNN classifies warped
# regions, and its detector is assembled by its stages (tests/detection/test_rcnn_*.py).
DETECTORS = sorted(name for name, spec in MODELS.items() if spec.task == "detection" and spec.trainer is None)
NUM_CLASSES = 3
SIZE = 64
BATCH = 2
MAX_OBJECTS = 4

# model name -> (shared model keys, the family's group keys): small enough to compile fast.
TINY = {
    "faster_rcnn": (
        {"backbone": "resnet18", "width": 8},
        {"fpn_channels": 16, "rpn_pre_nms_topk_train": 100, "rpn_post_nms_topk_train": 40,
         "rpn_pre_nms_topk_test": 100, "rpn_post_nms_topk_test": 40, "roi_num_samples": 16,
         "box_head_fc_dim": 32, "test_max_detections": 10, "test_score_threshold": 0.0,
         "anchor_sizes": ((8,), (16,), (32,), (64,), (128,))},
    ),
    "mask_rcnn": (
        {"backbone": "resnet18", "width": 8},
        {"fpn_channels": 16, "rpn_pre_nms_topk_train": 100, "rpn_post_nms_topk_train": 40,
         "rpn_pre_nms_topk_test": 100, "rpn_post_nms_topk_test": 40, "roi_num_samples": 16,
         "box_head_fc_dim": 32, "test_max_detections": 10, "test_score_threshold": 0.0,
         "anchor_sizes": ((8,), (16,), (32,), (64,), (128,)), "mask_pooler_resolution": 7,
         "mask_head_conv_dim": 8, "mask_head_num_conv": 2},
    ),
    "faster_rcnn_c4": (
        {"backbone": "resnet18", "width": 8},
        {"anchor_sizes": ((8, 16, 32),), "roi_pooler_resolution": 8, "rpn_pre_nms_topk_train": 100,
         "rpn_post_nms_topk_train": 40, "rpn_pre_nms_topk_test": 100, "rpn_post_nms_topk_test": 40,
         "roi_num_samples": 16, "test_max_detections": 10, "test_score_threshold": 0.0},
    ),
    "mask_rcnn_c4": (
        {"backbone": "resnet18", "width": 8},
        {"anchor_sizes": ((8, 16, 32),), "roi_pooler_resolution": 8, "rpn_pre_nms_topk_train": 100,
         "rpn_post_nms_topk_train": 40, "rpn_pre_nms_topk_test": 100, "rpn_post_nms_topk_test": 40,
         "roi_num_samples": 16, "test_max_detections": 10, "test_score_threshold": 0.0,
         "mask_head_conv_dim": 8},
    ),
    "sliding_window": (
        {"backbone": "resnet18", "width": 8},
        {"feature": "C3", "scales": (1.0, 0.5), "window_shapes": ((2, 2), (3, 2)), "fc_dim": 16,
         "num_samples": 32, "max_detections": 10, "score_threshold": 0.0},
    ),
    "ssd": (
        {"backbone": "resnet18", "width": 8},
        {"resnet_sources": ("C3", "C4", "C5"), "resnet_source_channels": 16,
         "extras": ((8, 16, 3, 2, 1),), "aspect_ratios": ((2,), (2,), (2,), (2,)),
         "scales": (0.1, 0.3, 0.5, 0.7, 0.9), "steps": (), "l2norm": False, "max_detections": 10,
         "score_threshold": 0.0},
    ),
    "yolo_v1": (
        {"backbone": "resnet18", "width": 8},
        {"grid_size": 4, "feature": "C4", "head_channels": 16, "fc_dim": 32, "max_detections": 10,
         "score_threshold": 0.0},
    ),
    "yolo_v3": (
        {"backbone": "resnet18", "width": 8},
        {"neck_channels": 16, "max_detections": 10, "score_threshold": 0.0,
         "priors": ((6, 6), (8, 8), (10, 10), (14, 14), (18, 18), (22, 22), (28, 28), (36, 36), (48, 48))},
    ),
    "fast_rcnn": (
        {"backbone": "resnet18", "width": 8},
        {"roi_num_samples": 16, "box_head_fc_dim": 32, "test_max_detections": 10, "test_score_threshold": 0.0},
    ),
}  # fmt: skip


def tiny_detector(name):
    spec = MODELS[name]
    assert name in TINY, f"detector {name!r} has no tiny setup in this test: add one to TINY"
    config = base_config("detection", model=name)
    config.data.image_size, config.data.fixed_size = SIZE, True
    config.data.proposals = "selective_search"  # read by the detectors that take given proposals
    shared, group = TINY[name]
    for key, value in shared.items():
        config.model[key] = value
    for key, value in group.items():
        config.model[spec.group][key] = value
    return spec.build(config, NUM_CLASSES)


def random_targets(rng, num_objects):
    """Padded ground truth [BATCH, MAX_OBJECTS] with num_objects valid boxes per image, and their
    masks as the pipeline gives them in training (box_masks: each cropped to its box, 16 x 16 coverage
    0..255; here an ellipse inscribed in the box)."""
    xy = rng.uniform(0, SIZE - 24, (BATCH, MAX_OBJECTS, 2))
    wh = rng.uniform(8, 24, (BATCH, MAX_OBJECTS, 2))
    valid = np.broadcast_to(np.arange(MAX_OBJECTS) < num_objects, (BATCH, MAX_OBJECTS)).copy()
    boxes = np.where(valid[..., None], np.concatenate([xy, xy + wh], -1), 0).astype(np.float32)
    cell = (np.arange(16) + 0.5) / 8 - 1  # cell centres in [-1, 1]
    ellipse = ((cell[:, None] ** 2 + cell[None, :] ** 2) <= 1).astype(np.uint8) * 255
    return {
        "boxes": boxes,
        "classes": np.where(valid, rng.integers(0, NUM_CLASSES, (BATCH, MAX_OBJECTS)), 0).astype(np.int32),
        "valid": valid,
        "is_crowd": np.zeros((BATCH, MAX_OBJECTS), bool),
        "box_masks": np.where(valid[..., None, None], ellipse, 0).astype(np.uint8),
        **given_proposals(rng),
    }


NUM_PROPOSALS = 12


def given_proposals(rng):
    """Proposals as the pipeline gives them: [BATCH, NUM_PROPOSALS, 4] input pixels, the last 3 rows padding."""
    xy = rng.uniform(0, SIZE - 20, (BATCH, NUM_PROPOSALS, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(6, 20, (BATCH, NUM_PROPOSALS, 2))], -1).astype(np.float32)
    valid = np.broadcast_to(np.arange(NUM_PROPOSALS) < NUM_PROPOSALS - 3, (BATCH, NUM_PROPOSALS)).copy()
    return {"proposals": np.where(valid[..., None], boxes, 0).astype(np.float32), "proposal_valid": valid,
            "proposal_scores": rng.normal(size=(BATCH, NUM_PROPOSALS)).astype(np.float32)}


@pytest.fixture(scope="module", params=DETECTORS)
def built(request):
    model = tiny_detector(request.param)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, 3)), jnp.float32)
    sizes = jnp.asarray([[SIZE, SIZE], [SIZE - 16, SIZE - 8]], jnp.float32)
    variables = jax.jit(lambda key: model.init(key, images, sizes, train=False))(jax.random.key(0, impl="rbg"))
    return request.param, model, variables, images, sizes


def test_training_returns_finite_named_float32_losses_and_compiles_once(built, rng, seed):
    name, model, variables, images, sizes = built

    @jax.jit
    def step(variables, targets, key):
        def total(params):
            out, _ = model.apply(
                {**variables, "params": params}, images, sizes, targets, train=True,
                rngs={"sampling": key}, mutable=["batch_stats"],
            )  # fmt: skip
            return sum(out["losses"].values()), out

        return jax.value_and_grad(total, has_aux=True)(variables["params"])

    for num_objects in (1, MAX_OBJECTS, 0):
        (loss, out), grads = step(variables, random_targets(rng, num_objects), jax.random.key(seed))
        assert set(out) == {"losses", "metrics"}, f"{name}: train output keys {sorted(out)}"
        assert out["losses"], f"{name}: no named losses"
        for group in ("losses", "metrics"):
            for key, value in out[group].items():
                assert value.shape == () and value.dtype == jnp.float32, f"{name} {group}.{key}: {value.shape} {value.dtype}"
                assert np.isfinite(value), f"{name} {group}.{key}={value} with {num_objects} objects, seed {seed}"
        if "loss_mask" in out["losses"] and num_objects:  # the mask head learns from foreground RoIs
            assert float(out["metrics"]["mask_num_fg"]) > 0, f"{name}: no foreground RoI reached the mask loss"
            assert float(out["losses"]["loss_mask"]) > 0, f"{name}: loss_mask=0 with foreground, seed {seed}"
        gradient_norm = sum(float(jnp.sum(g.astype(jnp.float32) ** 2)) for g in jax.tree.leaves(grads))
        assert np.isfinite(gradient_norm), f"{name}: gradient not finite, seed {seed}"
        if num_objects:
            assert gradient_norm > 0, f"{name}: the losses do not depend on the parameters"
    assert step._cache_size() == 1, f"{name}: the train step compiled {step._cache_size()} times"


def test_inference_returns_the_detections_dict(built, rng):
    name, model, variables, images, sizes = built
    given = proposals_from_batch(given_proposals(rng))  # what tasks/detection.py passes at inference
    out = jax.jit(lambda v: model.apply(v, images, sizes, given, train=False))(variables)
    assert set(out) in ({"boxes", "scores", "classes", "valid"}, {"boxes", "scores", "classes", "valid", "masks"}), (
        f"{name}: {sorted(out)}"
    )
    k = out["scores"].shape[1]
    expected = {"boxes": ((BATCH, k, 4), jnp.float32), "scores": ((BATCH, k), jnp.float32),
                "classes": ((BATCH, k), jnp.int32), "valid": ((BATCH, k), jnp.bool_)}  # fmt: skip
    if "masks" in out:  # instance masks: probabilities on each detection's box, M x M
        side = out["masks"].shape[-1]
        expected["masks"] = ((BATCH, k, side, side), jnp.float32)
        masks = np.asarray(out["masks"])
        assert np.all((masks >= 0) & (masks <= 1)), f"{name}: mask probabilities outside [0, 1]"
    for key, (shape, dtype) in expected.items():
        assert out[key].shape == shape and out[key].dtype == dtype, f"{name} {key}: {out[key].shape} {out[key].dtype}"
    assert k == 10, f"{name}: K={k}, expected the configured max_detections"
    boxes, scores, classes, valid = (np.asarray(out[key]) for key in ("boxes", "scores", "classes", "valid"))
    for b in range(BATCH):
        height, width = np.asarray(sizes[b])
        kept = valid[b]
        assert kept.any(), f"{name}: no detection at score threshold 0 (image {b})"
        assert np.all(kept[: kept.sum()]), f"{name}: valid rows must come first"
        assert np.all(np.diff(scores[b][kept]) <= 0), f"{name}: scores not decreasing"
        assert np.all((classes[b][kept] >= 0) & (classes[b][kept] < NUM_CLASSES))
        assert np.all(boxes[b][kept] >= 0) and np.all(boxes[b][kept][:, [0, 2]] <= width)
        assert np.all(boxes[b][kept][:, [1, 3]] <= height)
        assert np.all(boxes[b][~kept] == 0) and np.all(scores[b][~kept] == 0)


def test_training_without_targets_is_refused_by_name(built):
    name, model, variables, images, sizes = built
    with pytest.raises(ValueError, match="training needs targets"):
        model.apply(variables, images, sizes, None, train=True, rngs={"sampling": jax.random.key(0)},
                    mutable=["batch_stats"])  # fmt: skip

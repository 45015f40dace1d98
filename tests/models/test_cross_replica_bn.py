"""`config.model.cross_replica_bn` reaches every BatchNorm of every model of the table.

Specification, for each model of `vision_jax.models.table.MODELS`, built through the table from a
tiny config (resnet18 of width 8, 64x64 images): a training apply under
`jax.vmap(..., axis_name="data")` over two replicas fed different images gives
* with `cross_replica_bn=True`, every batch_stats leaf equal across the replicas (the statistics
  are averaged over the "data" axis);
* with `cross_replica_bn=False`, every leaf different (per-device statistics).
A BatchNorm the switch does not reach keeps per-replica statistics and fails the first case.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.table import MODELS
from vision_jax.train.config import base_config

SIZE = 64
REPLICAS = 2
BATCH = 2  # images per replica
NUM_CLASSES = 3
MAX_OBJECTS = 2

# Family settings small enough to compile fast (the detection ones as in
# tests/detection/test_detector_contract.py's TINY table); other families keep their defaults.
TINY_GROUP = {
    "faster_rcnn": {
        "fpn_channels": 16, "rpn_pre_nms_topk_train": 100, "rpn_post_nms_topk_train": 40, "roi_num_samples": 16,
        "box_head_fc_dim": 32, "anchor_sizes": ((8,), (16,), (32,), (64,), (128,)),
    },
    "mask_rcnn": {
        "fpn_channels": 16, "rpn_pre_nms_topk_train": 100, "rpn_post_nms_topk_train": 40, "roi_num_samples": 16,
        "box_head_fc_dim": 32, "anchor_sizes": ((8,), (16,), (32,), (64,), (128,)), "mask_pooler_resolution": 7,
        "mask_head_conv_dim": 8, "mask_head_num_conv": 2,
    },
    "faster_rcnn_c4": {
        "anchor_sizes": ((8, 16, 32),), "roi_pooler_resolution": 8, "rpn_pre_nms_topk_train": 100,
        "rpn_post_nms_topk_train": 40, "roi_num_samples": 16,
    },
    "mask_rcnn_c4": {
        "anchor_sizes": ((8, 16, 32),), "roi_pooler_resolution": 8, "rpn_pre_nms_topk_train": 100,
        "rpn_post_nms_topk_train": 40, "roi_num_samples": 16, "mask_head_conv_dim": 8,
    },
    "ssd": {
        "resnet_sources": ("C3", "C4", "C5"), "resnet_source_channels": 16, "extras": ((8, 16, 3, 2, 1),),
        "aspect_ratios": ((2,), (2,), (2,), (2,)), "scales": (0.1, 0.3, 0.5, 0.7, 0.9), "steps": (), "l2norm": False,
    },
    "yolo_v1": {"grid_size": 4, "feature": "C4", "head_channels": 16, "fc_dim": 32},
    "rcnn": {"head": "gap", "num_fc": 1, "fc_dim": 16},
    "fast_rcnn": {"roi_num_samples": 16, "box_head_fc_dim": 32},
    "sliding_window": {"feature": "C3", "scales": (1.0, 0.5), "window_shapes": ((2, 2), (3, 2)), "fc_dim": 16,
                       "num_samples": 32},  # the CNN on warped regions: (images, train) like a classifier
    "yolo_v3": {
        "neck_channels": 16,
        "priors": ((6, 6), (8, 8), (10, 10), (14, 14), (18, 18), (22, 22), (28, 28), (36, 36), (48, 48)),
    },
}  # fmt: skip


def tiny_model(name: str, cross_replica_bn: bool):
    spec = MODELS[name]
    config = base_config(spec.task, model=name)
    config.data.image_size = SIZE
    if spec.task == "detection":
        config.data.fixed_size = True  # YOLO needs it; the others accept it
        config.data.proposals = "selective_search"  # read by the detectors that pool given proposals
    config.model.backbone, config.model.width, config.model.cross_replica_bn = "resnet18", 8, cross_replica_bn
    for key, value in TINY_GROUP.get(name, {}).items():
        config.model[spec.group][key] = value
    return spec.build(config, NUM_CLASSES)


def replica_batch_stats(name: str, model, rng: np.random.Generator) -> dict:
    """batch_stats after one training apply per replica, each leaf [REPLICAS, ...]."""
    replicas = jnp.asarray(rng.normal(size=(REPLICAS, BATCH, SIZE, SIZE, 3)), jnp.float32)  # different images
    key = jax.random.key(0, impl="rbg")
    if MODELS[name].task == "detection" and MODELS[name].trainer is None:  # a staged model's CNN: (images, train)
        sizes = jnp.full((BATCH, 2), SIZE, jnp.float32)
        corner = rng.uniform(0, SIZE / 2, (BATCH, MAX_OBJECTS, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(8, SIZE / 2, corner.shape)], -1)  # x1, y1, x2, y2
        targets = {
            "boxes": jnp.asarray(boxes, jnp.float32),
            "classes": jnp.asarray(rng.integers(0, NUM_CLASSES, (BATCH, MAX_OBJECTS)), jnp.int32),
            "valid": jnp.ones((BATCH, MAX_OBJECTS), bool),
            "is_crowd": jnp.zeros((BATCH, MAX_OBJECTS), bool),
            "box_masks": jnp.asarray(rng.integers(0, 256, (BATCH, MAX_OBJECTS, 16, 16)), jnp.uint8),  # Mask R-CNN
            "proposals": jnp.asarray(boxes, jnp.float32),  # Fast R-CNN pools given proposals
            "proposal_valid": jnp.ones((BATCH, MAX_OBJECTS), bool),
            "proposal_scores": jnp.zeros((BATCH, MAX_OBJECTS), jnp.float32),
        }
        variables = model.init(key, replicas[0], sizes, train=False)

        def train_apply(images):
            return model.apply(
                variables, images, sizes, targets, train=True, rngs={"sampling": key}, mutable=["batch_stats"]
            )[1]
    else:  # classifier, localizer, segmentation, autoencoder, R-CNN's CNN: (images, train)
        variables = model.init(key, replicas[0], train=False)

        def train_apply(images):
            return model.apply(variables, images, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[1]

    return jax.jit(jax.vmap(train_apply, axis_name="data"))(replicas)["batch_stats"]


@pytest.mark.parametrize("cross_replica_bn", [True, False], ids=["cross_replica", "per_device"])
@pytest.mark.parametrize("name", list(MODELS))
def test_cross_replica_bn_reaches_every_batchnorm(name, cross_replica_bn, seed):
    stats = replica_batch_stats(name, tiny_model(name, cross_replica_bn), np.random.default_rng(seed))
    leaves = jax.tree_util.tree_leaves_with_path(stats)
    assert leaves, f"{name} has no BatchNorm statistics"
    wrong = [
        jax.tree_util.keystr(path)
        for path, leaf in leaves
        if np.allclose(leaf[0], leaf[1], rtol=1e-5, atol=1e-6) != cross_replica_bn
    ]
    state = "differ across" if cross_replica_bn else "are equal across"
    assert not wrong, f"seed={seed} {name} cross_replica_bn={cross_replica_bn}: {wrong} {state} the replicas"

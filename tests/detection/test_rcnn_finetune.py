"""R-CNN's fine-tuning objective (vision_jax/models/rcnn/rcnn_finetune.py): region labels against a float64
NumPy reference of the paper's rule (IoU >= 0.5 with a ground-truth box: its class, else background), the
25%-foreground sampling, and the CNN learning a fixed batch of warped regions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.models.rcnn.rcnn_box_regression import box_iou_numpy
from vision_jax.models.rcnn.rcnn_finetune import finetune_loss, region_labels, sample_regions
from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings
from vision_jax.models.rcnn.region_cnn import build_region_cnn
from vision_jax.train.config import base_config

NUM_CLASSES = 3


def random_boxes(rng, count, size=64.0):
    corner = rng.uniform(0, size * 0.7, (count, 2))
    return np.concatenate([corner, corner + rng.uniform(4, size * 0.4, (count, 2))], 1).astype(np.float32)


def reference_labels(candidates, candidate_valid, gt_boxes, gt_classes, gt_valid, threshold):
    labels = np.full(len(candidates), NUM_CLASSES)
    real = np.flatnonzero(gt_valid)
    if len(real):
        iou = box_iou_numpy(candidates, gt_boxes[real])  # float64
        best = iou.argmax(1)
        labels = np.where(iou.max(1) >= threshold, gt_classes[real][best], NUM_CLASSES)
    return np.where(candidate_valid, labels, -1)


def test_region_labels_follow_the_paper_rule(rng, seed):
    gt = random_boxes(rng, 5)
    gt_classes = rng.integers(0, NUM_CLASSES, 5).astype(np.int32)
    gt_valid = np.array([True, True, False, True, True])
    candidates = np.concatenate([gt, gt + rng.normal(0, 3, gt.shape), random_boxes(rng, 40)]).astype(np.float32)
    candidate_valid = rng.random(len(candidates)) < 0.9
    labels = np.asarray(region_labels(jnp.asarray(candidates), jnp.asarray(candidate_valid), jnp.asarray(gt),
                                      jnp.asarray(gt_classes), jnp.asarray(gt_valid), NUM_CLASSES, 0.5))
    expected = reference_labels(candidates, candidate_valid, gt, gt_classes, gt_valid, 0.5)
    assert (labels == expected).all(), f"seed={seed}: {np.flatnonzero(labels != expected)}"


def test_sampled_batch_is_at_most_a_quarter_foreground_with_true_labels(rng, seed):
    batch, num_gt, num_proposals = 3, 4, 60
    settings = RegionCNNSettings(regions_per_image=16, fg_fraction=0.25)
    gt = np.stack([random_boxes(rng, num_gt) for _ in range(batch)])
    targets = {
        "boxes": jnp.asarray(gt), "classes": jnp.asarray(rng.integers(0, NUM_CLASSES, (batch, num_gt)), jnp.int32),
        "valid": jnp.asarray(rng.random((batch, num_gt)) < 0.8), "is_crowd": jnp.zeros((batch, num_gt), bool),
        "proposals": jnp.asarray(np.stack([random_boxes(rng, num_proposals) for _ in range(batch)])),
        "proposal_valid": jnp.asarray(rng.random((batch, num_proposals)) < 0.9),
    }  # fmt: skip
    index, boxes, labels, valid = (np.asarray(x) for x in sample_regions(targets, jax.random.key(seed), settings, NUM_CLASSES))
    assert index.tolist() == np.repeat(np.arange(batch), 16).tolist()
    for b in range(batch):
        mine = slice(16 * b, 16 * (b + 1))
        t = {k: np.asarray(v[b]) for k, v in targets.items()}
        candidates = np.concatenate([t["boxes"], t["proposals"]])
        all_labels = reference_labels(candidates, np.concatenate([t["valid"], t["proposal_valid"]]), t["boxes"],
                                      t["classes"], t["valid"], 0.5)  # fmt: skip
        foreground = int(((all_labels >= 0) & (all_labels < NUM_CLASSES)).sum())
        assert valid[mine].all(), f"seed={seed}"
        assert int((labels[mine] < NUM_CLASSES).sum()) == min(foreground, 4), f"seed={seed}"
        sampled = reference_labels(boxes[mine], valid[mine], t["boxes"], t["classes"], t["valid"], 0.5)
        assert (sampled == labels[mine]).all(), f"seed={seed}"


def test_cnn_learns_a_fixed_batch_of_warped_regions(rng, seed):
    config = base_config("detection", model="rcnn")
    config.model.width = 8
    for key, value in {"crop_size": 16, "head": "gap", "num_fc": 1, "fc_dim": 32, "dropout_rate": 0.0,
                       "regions_per_image": 8}.items():  # fmt: skip
        config.model.rcnn[key] = value
    model = build_region_cnn(config, NUM_CLASSES)
    images = np.zeros((2, 48, 48, 3), np.float32)
    gt = np.array([[[4, 4, 20, 20], [26, 24, 44, 44]], [[10, 6, 30, 26], [0, 30, 16, 46]]], np.float32)
    classes = np.array([[0, 1], [2, 0]], np.int32)
    colours = np.eye(3, dtype=np.float32) * 2 - 0.5
    for b in range(2):
        for (x1, y1, x2, y2), c in zip(gt[b].astype(int), classes[b]):
            images[b, y1:y2, x1:x2] = colours[c]
    targets = {"boxes": jnp.asarray(gt), "classes": jnp.asarray(classes), "valid": jnp.ones((2, 2), bool),
               "is_crowd": jnp.zeros((2, 2), bool),
               "proposals": jnp.asarray(np.stack([random_boxes(rng, 20, 48.0) for _ in range(2)])),
               "proposal_valid": jnp.ones((2, 20), bool)}  # fmt: skip
    sizes = jnp.full((2, 2), 48.0)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False)
    tx = optax.adam(3e-3)
    params, state, opt = variables["params"], {"batch_stats": variables["batch_stats"]}, tx.init(variables["params"])
    settings = model.settings

    @jax.jit
    def step(params, state, opt, key):
        loss_fn = lambda p: finetune_loss(model, {"params": p, **state}, jnp.asarray(images), sizes, targets, key,
                                          settings, NUM_CLASSES)  # fmt: skip
        (loss, (metrics, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), new_state, opt, loss

    losses = []
    for i in range(60):
        params, state, opt, loss = step(params, state, opt, jax.random.key(i))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), f"seed={seed}: {losses[:5]} -> {losses[-5:]}"

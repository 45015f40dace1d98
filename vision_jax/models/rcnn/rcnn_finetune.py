"""R-CNN's fine-tuning objective (section 2.3): the CNN classifies warped regions into C classes + background.

Per image of a detection batch (data/detection_inputs.py with `data.proposals`), the candidates are its
ground-truth boxes and its proposals; a candidate whose IoU with some (non-crowd) ground-truth box is >=
fg_iou_threshold takes the class of the box it overlaps most, every other candidate is background (index C).
`regions_per_image` candidates are drawn, at most fg_fraction of them foreground
(vision_jax.ops.sample_balanced), warped (region_warp.py) and classified; the loss is the mean softmax
cross-entropy over the drawn regions.

`FinetuneTask` is the task side of vision_jax.train.steps.make_train_step for this objective (its `loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vision_jax.ops.boxes import box_iou
from vision_jax.ops.matching import sample_balanced
from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings
from vision_jax.models.rcnn.region_warp import warp_regions_of_images

IGNORE = -1


def region_labels(candidates: jax.Array, candidate_valid: jax.Array, gt_boxes: jax.Array, gt_classes: jax.Array,
                  gt_valid: jax.Array, num_classes: int, fg_iou_threshold: float) -> jax.Array:
    """int32 [N]: the class (0..C-1) of the ground-truth box a candidate [N, 4] overlaps most when that IoU
    is >= fg_iou_threshold, else num_classes (background); IGNORE (-1) for invalid candidates."""
    iou = jnp.where(gt_valid[:, None], box_iou(gt_boxes, candidates), -1.0)  # [G, N]
    best = jnp.argmax(iou, axis=0)
    best_iou = jnp.max(iou, axis=0) if gt_boxes.shape[0] else jnp.full(candidates.shape[:1], -1.0)
    labels = jnp.where(best_iou >= fg_iou_threshold, gt_classes[best] if gt_boxes.shape[0] else 0, num_classes)
    return jnp.where(candidate_valid, labels, IGNORE).astype(jnp.int32)


def sample_regions(targets: dict, key: jax.Array, settings: RegionCNNSettings, num_classes: int):
    """The regions of one fine-tuning batch: (image_index [B*R] int32, boxes [B*R, 4], labels [B*R] int32,
    valid [B*R] bool), R = settings.regions_per_image, from targets' ground truth and proposals ([B, ...])."""
    if "proposals" not in targets:
        raise ValueError("R-CNN fine-tuning needs proposals in the batch: set config.data.proposals "
                         "('selective_search' or a proposal file)")  # fmt: skip
    gt_valid = targets["valid"] & ~targets.get("is_crowd", jnp.zeros_like(targets["valid"]))

    def one_image(gt_boxes, gt_classes, valid, proposals, proposal_valid, image_key):
        candidates = jnp.concatenate([gt_boxes, proposals])
        candidate_valid = jnp.concatenate([valid, proposal_valid])
        labels = region_labels(candidates, candidate_valid, gt_boxes, gt_classes, valid, num_classes,
                               settings.fg_iou_threshold)  # fmt: skip
        index, sampled = sample_balanced(labels, image_key, settings.regions_per_image, settings.fg_fraction,
                                         bg_label=num_classes)  # fmt: skip
        index = jnp.maximum(index, 0)
        return candidates[index], jnp.where(sampled, labels[index], IGNORE), sampled

    batch = targets["boxes"].shape[0]
    boxes, labels, valid = jax.vmap(one_image)(
        targets["boxes"], targets["classes"], gt_valid, targets["proposals"], targets["proposal_valid"],
        jax.random.split(key, batch))  # fmt: skip
    image_index = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), settings.regions_per_image)
    return image_index, boxes.reshape(-1, 4), labels.reshape(-1), valid.reshape(-1)


def finetune_loss(model, variables: dict, images: jax.Array, image_sizes: jax.Array, targets: dict,
                  key: jax.Array, settings: RegionCNNSettings, num_classes: int):
    """(loss, (metrics, new model state)) of one batch: images [B, H, W, 3], image_sizes [B, 2]."""
    sample_key, dropout_key = jax.random.split(key)
    image_index, boxes, labels, valid = sample_regions(targets, sample_key, settings, num_classes)
    crops = warp_regions_of_images(images, image_index, boxes, image_sizes, crop_size=settings.crop_size,
                                   context_padding=settings.padding)  # fmt: skip
    outputs, new_state = model.apply(variables, crops.astype(images.dtype), train=True,
                                     rngs={"dropout": dropout_key}, mutable=["batch_stats"])  # fmt: skip
    logits = outputs["logits"]
    per_region = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    weight = valid.astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    loss = jnp.sum(per_region * weight) / count
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    foreground = (valid & (labels < num_classes)).astype(jnp.float32)
    metrics = {
        "loss_cls": loss,
        "region_accuracy": jnp.sum(correct * weight) / count,
        "foreground_accuracy": jnp.sum(correct * foreground) / jnp.maximum(foreground.sum(), 1.0),
        "foreground_fraction": foreground.sum() / count,
    }
    return loss, (metrics, new_state)


class FinetuneTask:
    """What vision_jax.train.steps.make_train_step asks of a task, for R-CNN's fine-tuning."""

    def __init__(self, settings: RegionCNNSettings, num_classes: int, canvas: int):
        self.settings, self.num_classes, self.canvas = settings, num_classes, canvas

    def loss(self, model, variables, batch, rng, train):
        from vision_jax.models.detector import targets_from_batch
        from vision_jax.tasks.detection import image_sizes

        targets = targets_from_batch(batch)
        targets["is_crowd"] = batch.get("is_crowd", jnp.zeros_like(batch["valid"]))
        sizes = image_sizes(batch["image_info"], self.canvas)
        return finetune_loss(model, variables, batch["image"], sizes, targets, rng, self.settings, self.num_classes)

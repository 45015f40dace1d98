"""Region Proposal Network (Ren et al., 2015): head, training targets and losses, proposal selection.

Everything follows detectron2's StandardRPNHead / RPN / find_top_rpn_proposals, with static shapes;
the hyper-parameters are RCNNSettings' `rpn_*` and `anchor_*` fields (settings.py), which the
detectors (faster_rcnn.py) pass to these functions:

* head: a shared 3x3 conv + ReLU, then 1x1 convs to A objectness logits and 4A box deltas per
  location, the same weights on every pyramid level. Outputs are flattened location-major,
  anchor-minor, the order of `vision_jax.ops.grid_anchors`.
* targets (per image): anchors matched to ground truth at IoU >= fg_iou_threshold foreground,
  < bg_iou_threshold background, ignored in between, plus low-quality matches (every anchor with
  a ground truth's highest IoU is foreground); crowd boxes are never matched and anchors mostly
  inside one are ignored. A fixed-size random sample of `num_samples` anchors, at most
  `positive_fraction` of them foreground, is the loss's support.
* losses: binary cross-entropy of the objectness logits over the sampled anchors and an L1
  (smooth-L1 with beta > 0) loss of the deltas over the sampled foreground anchors, both summed
  and divided by num_samples x the number of images (detectron2's normaliser).
* proposals (per image): per level the top `pre_nms_topk` anchors by objectness, decoded, clipped
  to the image, boxes with a side <= min_size dropped; NMS at `nms_threshold` within each level
  (detectron2 and torchvision run batched NMS with the level as the class); the `post_nms_topk`
  best overall.

Boxes are (x1, y1, x2, y2) in network-input pixels; deltas use weights (1, 1, 1, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vision_jax.ops as vops


class RPNHead(nn.Module):
    """Objectness logits and anchor deltas on every level with shared weights.

    Attributes:
      num_anchors: A, anchors per location (the same on every level).
      conv_channels: channels of the shared 3x3 conv; None = the input's channels (detectron2);
        RCNNSettings.rpn_conv_channels.
      dtype: compute dtype; outputs are float32.

    __call__(features: sequence of L maps [B, H_l, W_l, C]) ->
      (objectness: L arrays float32 [B, H_l * W_l * A], deltas: L arrays float32 [B, H_l * W_l * A, 4]).
    """

    num_anchors: int
    conv_channels: int | None
    dtype: Any = None

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]):
        channels = self.conv_channels or features[0].shape[-1]
        init = nn.initializers.normal(0.01)  # detectron2 and torchvision: N(0, 0.01), zero bias
        conv = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, kernel_init=init, name="conv")
        objectness = nn.Conv(self.num_anchors, (1, 1), dtype=self.dtype, kernel_init=init, name="objectness")
        deltas = nn.Conv(self.num_anchors * 4, (1, 1), dtype=self.dtype, kernel_init=init, name="deltas")
        all_logits, all_deltas = [], []
        for x in features:
            hidden = nn.relu(conv(x))
            batch = x.shape[0]
            all_logits.append(objectness(hidden).astype(jnp.float32).reshape(batch, -1))
            all_deltas.append(deltas(hidden).astype(jnp.float32).reshape(batch, -1, 4))
        return all_logits, all_deltas


def rpn_targets(
    anchors: jax.Array,
    gt_boxes: jax.Array,
    gt_valid: jax.Array,
    gt_is_crowd: jax.Array,
    key: jax.Array,
    *,
    fg_iou_threshold: float,
    bg_iou_threshold: float,
    num_samples: int,
    positive_fraction: float,
):
    """Sampled anchor labels and box targets of one image (module docstring).

    Args:
      anchors: float [A, 4] input pixels; gt_boxes: float [G, 4] input pixels; gt_valid,
      gt_is_crowd: bool [G]; key: PRNG key.
    Returns:
      labels: int32 [A]: 1 sampled foreground, 0 sampled background, -1 not sampled.
      box_targets: float32 [A, 4], deltas from each anchor to its matched ground truth (meaningful
        where labels == 1).
    """
    matched, labels = vops.match_boxes(
        gt_boxes,
        gt_valid,
        anchors,
        gt_is_crowd,
        fg_threshold=fg_iou_threshold,
        bg_threshold=bg_iou_threshold,
        allow_low_quality_matches=True,
    )
    positive, negative = vops.sample_balanced_masks(labels, key, num_samples, positive_fraction)
    sampled_labels = jnp.where(positive, 1, jnp.where(negative, 0, -1)).astype(jnp.int32)
    box_targets = vops.encode_boxes(gt_boxes[matched], anchors)
    return sampled_labels, box_targets


def rpn_losses(
    objectness: jax.Array,
    deltas: jax.Array,
    labels: jax.Array,
    box_targets: jax.Array,
    num_samples: int,
    *,
    smooth_l1_beta: float,
) -> dict[str, jax.Array]:
    """detectron2's RPN losses over a batch.

    Args:
      objectness: float [B, A] logits; deltas: float [B, A, 4]; labels: int [B, A] from
      `rpn_targets`; box_targets: float [B, A, 4]; num_samples: anchors sampled per image (the
      normaliser's factor); smooth_l1_beta: 0 = L1.
    Returns:
      {'loss_rpn_cls': float32 scalar, 'loss_rpn_loc': float32 scalar}.
    """
    normaliser = num_samples * objectness.shape[0]
    sampled = labels >= 0
    bce = optax.sigmoid_binary_cross_entropy(objectness, (labels == 1).astype(objectness.dtype))
    box = vops.smooth_l1_loss(deltas, box_targets, beta=smooth_l1_beta).sum(-1)
    return {
        "loss_rpn_cls": jnp.sum(jnp.where(sampled, bce, 0.0)) / normaliser,
        "loss_rpn_loc": jnp.sum(jnp.where(labels == 1, box, 0.0)) / normaliser,
    }


def select_proposals(
    objectness: Sequence[jax.Array],
    deltas: Sequence[jax.Array],
    anchors: Sequence[jax.Array],
    image_size: jax.Array,
    *,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_threshold: float,
    min_size: float,
):
    """Proposals of one image (module docstring).

    Args:
      objectness: L arrays [A_l] logits; deltas: L arrays [A_l, 4]; anchors: L arrays [A_l, 4].
      image_size: [2] (height, width) of the image inside the padded input; boxes are clipped to it.
      pre_nms_topk: candidates kept per level (all of a level's anchors if it has fewer).
      post_nms_topk: static number of proposals returned.
      min_size: boxes with a side <= min_size are dropped (detectron2's nonempty(min_size)).
    Returns:
      boxes: float32 [post_nms_topk, 4], by decreasing objectness, zeros on padding rows;
      scores: float32 [post_nms_topk] objectness logits (-inf on padding rows);
      valid: bool [post_nms_topk].
    """
    candidates, scores, level_ids = [], [], []
    for level, (logits, level_deltas, level_anchors) in enumerate(zip(objectness, deltas, anchors)):
        k = min(pre_nms_topk, logits.shape[0])
        top_scores, top = jax.lax.top_k(logits, k)
        boxes = vops.decode_boxes(level_deltas[top], level_anchors[top])
        candidates.append(vops.clip_boxes(boxes, image_size[0], image_size[1]))
        scores.append(top_scores)
        level_ids.append(jnp.full((k,), level, jnp.int32))
    boxes, scores, level_ids = (jnp.concatenate(v) for v in (candidates, scores, level_ids))
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (widths > min_size) & (heights > min_size) & jnp.all(jnp.isfinite(boxes), -1)
    keep &= jnp.isfinite(scores)
    scores = jnp.where(keep, scores, -jnp.inf)  # never an NMS candidate
    indices, num_valid = vops.batched_nms(boxes, scores, level_ids, nms_threshold, post_nms_topk)
    valid = jnp.arange(post_nms_topk) < num_valid
    safe = jnp.where(valid, indices, 0)
    return (jnp.where(valid[:, None], boxes[safe], 0.0), jnp.where(valid, scores[safe], -jnp.inf), valid)

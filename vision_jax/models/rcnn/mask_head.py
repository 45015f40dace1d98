"""Mask R-CNN's mask head (He et al., 2017) as detectron2's MaskRCNNConvUpsampleHead: the head, its
targets and loss, its inference, side by side.

* `MaskHead`: pooled RoI features [R, P, P, D] (P = mask_pooler_resolution) -> `num_conv` 3x3 convs
  of `conv_dim` + ReLU -> 2x2 stride-2 transposed conv + ReLU -> 1x1 conv with one output per class
  -> mask logits float32 [R, 2P, 2P, C] (class-specific masks, no background channel).
* `mask_rcnn_targets`: each RoI's matched ground-truth mask cropped to the RoI and resized to M x M
  (detectron2's BitMasks.crop_and_resize: aligned RoIAlign with adaptive sampling, then >= 0.5),
  read from the input pipeline's box masks (each mask cropped to its box, data/instance_masks.py);
  `foreground_first` and `sampled_mask_loss` apply it to the box head's sample, FPN and C4 alike.
* `mask_rcnn_loss`: per-pixel sigmoid cross-entropy on the ground-truth class's channel, averaged
  over the foreground RoIs x M x M; exactly 0 when there is no foreground RoI.
* `mask_rcnn_inference`: the sigmoid of each detection's predicted-class channel.

Masks here are [.., M, M] with rows along y; boxes (x1, y1, x2, y2) in network-input pixels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vision_jax.ops as vops

# detectron2's c2_msra_fill: kaiming_normal_(mode='fan_out', nonlinearity='relu'), a plain (not
# truncated) normal with variance 2 / fan_out, where torch's fan_out = weight.size(0) x kernel area.
msra_fill = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# For ConvTranspose2d torch's weight is [in, out, kh, kw], so its "fan_out" is in_channels x kernel
# area; flax's deconv kernel is [kh, kw, in, out], hence the swapped axes (the same value whenever
# in == out, as in the default head).
msra_fill_deconv = nn.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=-1, out_axis=-2)


class MaskHead(nn.Module):
    """detectron2's MaskRCNNConvUpsampleHead (module docstring); RCNNSettings.mask_head_num_conv,
    mask_head_conv_dim.

    Initialisation as detectron2: MSRA fill for the convs and the deconv, N(0, 0.001) for the
    predictor, zero biases. Weight layout: the deconv's flax kernel [2, 2, in, out] computes
    out[2i + a, 2j + b] = x[i, j] @ kernel[1 - a, 1 - b]; a torch ConvTranspose2d weight W
    [in, out, 2, 2] is kernel = W.transpose(2, 3, 0, 1)[::-1, ::-1].

    __call__(pooled: [R, P, P, D], train) -> float32 [R, 2P, 2P, num_classes] logits.
    """

    num_classes: int
    conv_dim: int
    num_conv: int
    dtype: Any = None

    @nn.compact
    def __call__(self, pooled: jax.Array, train: bool = False) -> jax.Array:
        del train  # no batch statistics in this head
        x = pooled
        for index in range(self.num_conv):
            x = nn.Conv(self.conv_dim, (3, 3), padding=1, dtype=self.dtype, kernel_init=msra_fill,
                        name=f"mask_fcn{index + 1}")(x)  # fmt: skip
            x = nn.relu(x)
        x = nn.ConvTranspose(self.conv_dim, (2, 2), strides=(2, 2), padding="VALID", dtype=self.dtype,
                             kernel_init=msra_fill_deconv, name="deconv")(x)  # fmt: skip
        x = nn.relu(x)
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.normal(0.001),
                         name="predictor")(x)  # fmt: skip
        return logits.astype(jnp.float32)


def mask_rcnn_targets(
    box_masks: jax.Array, gt_boxes: jax.Array, gt_index: jax.Array, rois: jax.Array, mask_resolution: int
) -> jax.Array:
    """Mask targets of one image's RoIs: the matched ground-truth mask cropped to the RoI, M x M.

    The pipeline stores each ground-truth mask cropped to its box (data/instance_masks.py: K x K
    coverage, 0..255); `vops.mask_targets_from_box_masks` crops each RoI out of its matched box mask
    (detectron2's crop_and_resize, read from the box mask instead of the full-image mask).

    Static under jit: `mask_resolution`.

    Args:
      box_masks: [G, K, K] coverage: uint8 0..255 (the pipeline's) or float in [0, 1];
      gt_boxes: float [G, 4] the ground-truth boxes (input pixels) the masks were cropped to;
      gt_index: int [R] rows of box_masks (any row for RoIs that are not foreground: their targets
      are not used); rois: float [R, 4] input pixels; mask_resolution: M.
    Returns:
      float32 [R, M, M] 0/1 targets.
    """
    coverage = box_masks.astype(jnp.float32)
    if jnp.issubdtype(box_masks.dtype, jnp.integer):
        coverage = coverage / 255.0
    return vops.mask_targets_from_box_masks(coverage, gt_boxes, gt_index, rois, mask_resolution)


def foreground_first(sampled: dict[str, jax.Array], num_samples: int, positive_fraction: float, num_classes: int):
    """The RoIs of the box head's sample that can be foreground, in a static count.

    The sampler puts foreground first, so the first max(1, int(num_samples x positive_fraction))
    RoIs of each image hold all of them (detectron2 keeps only the foreground, a dynamic count).
    Returns ({key: value[:, :F]} of `sampled`, foreground bool [B, F]).
    """
    most_foreground = max(1, int(num_samples * positive_fraction))
    first = {key: value[:, :most_foreground] for key, value in sampled.items()}
    return first, first["valid"] & (first["classes"] < num_classes)


def sampled_mask_loss(logits: jax.Array, first: dict[str, jax.Array], foreground: jax.Array, targets: dict) -> tuple:
    """`mask_rcnn_loss` of a batch's foreground RoIs against their box-mask targets.

    Args:
      logits: float [B, F, M, M, C] mask logits of the RoIs `first['boxes']` [B, F, 4];
      first, foreground: `foreground_first`; targets: the detector's targets with 'boxes' [B, G, 4]
      and 'box_masks' [B, G, K, K].
    Returns:
      (float32 loss, float32 foreground RoIs per image).
    """
    box_masks = targets.get("box_masks")
    if box_masks is None:
        raise ValueError("mask_rcnn training needs targets['box_masks'] [B, G, K, K]: set data.with_masks=True")
    if box_masks.ndim != 4 or box_masks.shape[:2] != targets["boxes"].shape[:2] or box_masks.shape[2] != box_masks.shape[3]:
        raise ValueError(f"targets['box_masks'] must be [B, G, K, K] with [B, G]={targets['boxes'].shape[:2]}, "
                         f"got shape {box_masks.shape}")  # fmt: skip
    resolution = logits.shape[2]
    mask_targets = jax.vmap(lambda m, g, i, r: mask_rcnn_targets(m, g, i, r, resolution))(
        box_masks, targets["boxes"], first["gt_index"], first["boxes"]
    )
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    loss = mask_rcnn_loss(flat(logits), flat(first["classes"]), flat(foreground), flat(mask_targets))
    return loss, jnp.sum(foreground).astype(jnp.float32) / foreground.shape[0]


def mask_rcnn_loss(logits: jax.Array, classes: jax.Array, foreground: jax.Array, targets: jax.Array) -> jax.Array:
    """detectron2's mask_rcnn_loss over a batch of RoIs.

    Args:
      logits: float [N, M, M, C] mask logits; classes: int [N] ground-truth class of each RoI
      (anything where not foreground); foreground: bool [N], which RoIs count; targets: float
      [N, M, M] 0/1.
    Returns:
      float32 scalar: mean of the sigmoid cross-entropy over the foreground RoIs x M x M (0 when no
      RoI is foreground, and then no gradient either).
    """
    num_classes = logits.shape[-1]
    safe_classes = jnp.clip(classes, 0, num_classes - 1)
    chosen = jnp.take_along_axis(logits, safe_classes[:, None, None, None], axis=-1)[..., 0]
    per_pixel = optax.sigmoid_binary_cross_entropy(chosen.astype(jnp.float32), targets.astype(jnp.float32))
    per_roi = jnp.where(foreground, per_pixel.sum(axis=(1, 2)), 0.0)
    count = jnp.sum(foreground).astype(jnp.float32) * logits.shape[1] * logits.shape[2]
    return jnp.sum(per_roi) / jnp.maximum(count, 1.0)


def mask_rcnn_inference(logits: jax.Array, classes: jax.Array) -> jax.Array:
    """Mask probabilities of detections: logits float [..., M, M, C], classes int [...] in 0..C-1
    (the predicted class) -> float32 [..., M, M], the sigmoid of that class's channel."""
    safe_classes = jnp.clip(classes, 0, logits.shape[-1] - 1)
    chosen = jnp.take_along_axis(logits, safe_classes[..., None, None, None], axis=-1)[..., 0]
    return jax.nn.sigmoid(chosen.astype(jnp.float32))

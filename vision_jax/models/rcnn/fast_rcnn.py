"""Fast R-CNN (Girshick, 2015): the CNN runs once per image; each given proposal is pooled from the
shared feature map (RoIPool 7x7) and classified by two FC layers.

    images [B, S, S, 3] -> backbone -> one feature map (settings.feature_map, stride 16 in the paper)
      train: targets['proposals'] (+ the ground truth, roi_append_gt) -> 64 RoIs per image, 25% with
             IoU >= 0.5 (foreground), the rest with IoU in [0.1, 0.5) (background) -> RoIPool ->
             fc6, fc7 (ReLU) -> softmax over C + 1 classes (background last) and class-specific box
             deltas -> loss_cls (cross-entropy) + loss_box_reg (smooth L1, beta 1, lambda 1)
      test:  every valid given proposal -> the same head -> per-class decode, class-aware NMS, top-k
             (box_head.detect: vision_jax.ops.multiclass_detections)

Proposals come from outside the network, in training and in inference: the batch's `proposals`
[B, P, 4] (input pixels), `proposal_valid` [B, P] (and `proposal_scores`, unused here), made by the
input pipeline from selective search or a file (vision_jax/data/proposals.py, `data.proposals`).
The contract (vision_jax/models/detector.py) hands them to `detect` because `takes_proposals` is True.

Losses: 'loss_cls', 'loss_box_reg' (the box loss summed over the 4 deltas of the foreground RoIs and
divided by the number of sampled RoIs, as py-faster-rcnn's SmoothL1Loss and detectron2's).
Metrics: 'roi_num_fg_samples' (per image), 'roi_cls_accuracy', 'roi_fg_cls_accuracy',
'num_given_proposals' (valid proposals per image). Box deltas use box_head.BOX_WEIGHTS (10, 10, 5,
5): the paper's target normalisation (zero mean, std 0.1 / 0.2).

Truncated SVD (paper section 3.1): an FC layer y = x W + b with W [in, out] is replaced at test time
by y = (x U_t S_t) V_t^T + b, two layers of in x t and t x out, where W = U S V^T and t = the rank
kept. `truncated_svd_variables(variables, ranks)` factorises trained parameters; a model built with
settings.svd_ranks = ranks runs them (`FastRCNNBoxHead`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import vision_jax.ops as vops
from vision_jax.models.backbones.fpn import fpn_kernel_init
from vision_jax.models.detector import Detector, check_proposals, stack_detections
from vision_jax.models.rcnn import box_head as roi_box_head
from vision_jax.models.rcnn.settings import FastRCNNSettings


class FastRCNNBoxHead(nn.Module):
    """Flatten, `num_fc` FC layers of `fc_dim` + ReLU, then box_head.BoxPredictor.

    svd_ranks: () = every FC layer whole ('fc1', 'fc2', ...); else one rank per layer, where rank t > 0
    makes layer i the pair 'fc{i}_svd_in' (in x t, no bias) and 'fc{i}_svd_out' (t x fc_dim, the
    layer's bias), as truncated_svd_variables writes them, and 0 keeps it whole.

    __call__(pooled: [R, h, w, C]) -> (logits float32 [R, C + 1], deltas float32 [R, C, 4]).
    """

    num_classes: int
    fc_dim: int
    num_fc: int
    svd_ranks: tuple[int, ...] = ()
    dtype: Any = None

    @nn.compact
    def __call__(self, pooled: jax.Array):
        x = pooled.reshape(pooled.shape[0], -1)
        for index in range(self.num_fc):
            name = f"fc{index + 1}"
            rank = self.svd_ranks[index] if self.svd_ranks else 0
            if rank:
                x = nn.Dense(rank, use_bias=False, dtype=self.dtype, name=f"{name}_svd_in")(x)
                x = nn.Dense(self.fc_dim, dtype=self.dtype, name=f"{name}_svd_out")(x)
            else:
                x = nn.Dense(self.fc_dim, dtype=self.dtype, kernel_init=fpn_kernel_init, name=name)(x)
            x = nn.relu(x)
        return roi_box_head.BoxPredictor(self.num_classes, dtype=self.dtype, name="predictor")(x)


def truncated_svd_variables(variables: dict, ranks: tuple[int, ...]) -> dict:
    """The trained variables of a FastRCNN with each FC layer i of the box head factorised to rank
    ranks[i] (0 = kept whole) by truncated SVD, for a model built with settings.svd_ranks = ranks.

    Kernel W [in, out] = U S V^T (float64 NumPy SVD): 'fc{i}_svd_in' kernel = U[:, :t] * S[:t] [in, t],
    'fc{i}_svd_out' kernel = V^T[:t] [t, out] with the layer's bias. Raises ValueError for a rank above
    min(in, out) or a head without that layer.
    """
    params = dict(variables["params"])  # shallow copies: only the box head's entries are replaced
    head = dict(params["box_head"])
    for index, rank in enumerate(ranks):
        name = f"fc{index + 1}"
        if not rank:
            continue
        if name not in head:
            raise ValueError(f"truncated SVD: the box head has no layer {name!r} (it has {sorted(head)})")
        kernel = np.asarray(head[name]["kernel"], np.float64)
        if rank > min(kernel.shape):
            raise ValueError(f"truncated SVD: rank {rank} for {name} exceeds min{kernel.shape}")
        u, s, vt = np.linalg.svd(kernel, full_matrices=False)
        dtype = head[name]["kernel"].dtype
        layer = head.pop(name)
        head[f"{name}_svd_in"] = {"kernel": jnp.asarray(u[:, :rank] * s[:rank], dtype)}
        head[f"{name}_svd_out"] = {"kernel": jnp.asarray(vt[:rank], dtype), "bias": layer["bias"]}
    params["box_head"] = head
    return {**variables, "params": params}


class FastRCNN(Detector):
    """Fast R-CNN on the detector contract (module docstring).

    Attributes: backbone (returns a dict of feature maps holding settings.feature_map), num_classes,
    settings, feature_stride (input pixels per pixel of that map: the pooler's 1 / spatial_scale),
    dtype (compute dtype).
    """

    backbone: nn.Module
    num_classes: int
    settings: FastRCNNSettings = FastRCNNSettings()
    feature_stride: int = 16
    dtype: Any = None

    takes_proposals = True  # a class constant (no annotation: not a module field)

    def setup(self):
        s = self.settings
        self.box_head = FastRCNNBoxHead(self.num_classes, s.box_head_fc_dim, s.box_head_num_fc, s.svd_ranks,
                                        dtype=self.dtype)

    def forward(self, images: jax.Array, train: bool) -> jax.Array:
        """images [B, S, S, 3] -> the feature map [B, S / stride, S / stride, C] the RoIs are pooled from."""
        self.settings.check()
        features = self.backbone(images, train)
        name = self.settings.feature_map
        if name not in features:
            raise ValueError(f"config.model.fast_rcnn.feature_map={name!r} is not a backbone output; "
                             f"it gives {sorted(features)}")
        return features[name]

    def pool(self, feature: jax.Array, boxes: jax.Array) -> jax.Array:
        """boxes [B, R, 4] input pixels -> [B * R, r, r, C] (image-major), r = roi_pooler_resolution."""
        s = self.settings
        batch, num_rois = boxes.shape[:2]
        flat, indices = boxes.reshape(-1, 4), jnp.repeat(jnp.arange(batch), num_rois)
        if s.roi_pooler_type == "pool":
            return vops.roi_pool(feature, flat, indices, s.roi_pooler_resolution, spatial_scale=1 / self.feature_stride)
        return vops.roi_align(feature, flat, indices, s.roi_pooler_resolution, spatial_scale=1 / self.feature_stride,
                              sampling_ratio=s.roi_sampling_ratio, aligned=True)

    def box_outputs(self, feature: jax.Array, boxes: jax.Array):
        """boxes [B, R, 4] -> (logits float32 [B, R, C + 1], deltas float32 [B, R, C, 4])."""
        batch, num_rois = boxes.shape[:2]
        logits, deltas = self.box_head(self.pool(feature, boxes))
        return logits.reshape(batch, num_rois, -1), deltas.reshape(batch, num_rois, self.num_classes, 4)

    def init_outputs(self, feature: jax.Array, images: jax.Array) -> dict[str, jax.Array]:
        """The head on one dummy RoI per image: every parameter exists, no proposals needed."""
        dummy = jnp.tile(jnp.asarray([[[0.0, 0.0, 16.0, 16.0]]]), (images.shape[0], 1, 1))
        logits, deltas = self.box_outputs(feature, dummy)
        return {"logits": logits, "deltas": deltas}

    def sample_rois(self, given: dict, targets: dict, key: jax.Array) -> dict[str, jax.Array]:
        """box_head.roi_targets per image on the given proposals: [B, roi_num_samples] RoIs."""
        s = self.settings
        batch = given["proposals"].shape[0]
        sample = functools.partial(
            roi_box_head.roi_targets, num_classes=self.num_classes, iou_threshold=s.roi_iou_threshold,
            num_samples=s.roi_num_samples, positive_fraction=s.roi_positive_fraction, append_gt=s.roi_append_gt,
            bg_iou_low=s.roi_bg_iou_low)
        return jax.vmap(sample)(given["proposals"], given["proposal_valid"], targets["boxes"], targets["classes"],
                                targets["valid"], targets["is_crowd"], jax.random.split(key, batch))

    def losses(self, feature: jax.Array, images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        batch = images.shape[0]
        given = check_proposals(targets, batch, type(self).__name__)
        sampled = self.sample_rois(given, targets, self.make_rng("sampling"))
        logits, deltas = self.box_outputs(feature, sampled["boxes"])
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        head = roi_box_head.box_head_losses(
            flat(logits), flat(deltas), flat(sampled["classes"]), flat(sampled["valid"]), flat(sampled["box_targets"]),
            smooth_l1_beta=self.settings.roi_smooth_l1_beta)
        return {
            "losses": {"loss_cls": head["loss_cls"], "loss_box_reg": head["loss_box_reg"]},
            "metrics": {
                "roi_num_fg_samples": head["num_fg"] / batch,
                "roi_cls_accuracy": head["cls_accuracy"],
                "roi_fg_cls_accuracy": head["fg_cls_accuracy"],
                "num_given_proposals": jnp.sum(given["proposal_valid"]) / batch,
            },
        }

    def detect(self, feature: jax.Array, images: jax.Array, image_sizes: jax.Array, proposals: dict) -> dict:
        """Every valid given proposal through the head, then box_head.detect per image."""
        s = self.settings
        boxes, valid = proposals["proposals"], proposals["proposal_valid"]
        logits, deltas = self.box_outputs(feature, boxes)
        post_process = functools.partial(roi_box_head.detect, score_threshold=s.test_score_threshold,
                                         nms_threshold=s.test_nms_threshold, max_detections=s.test_max_detections)
        return stack_detections(jax.vmap(post_process)(logits, deltas, boxes, valid, image_sizes))

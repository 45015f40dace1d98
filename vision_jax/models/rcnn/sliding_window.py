"""Sliding-window detection (OverFeat, Sermanet et al., 2014): a window classifier over an image
pyramid and several window shapes, run convolutionally, then class-aware NMS.

    images [B, H, W, 3] -> for each pyramid scale: the image resized by it -> backbone -> `feature`
    map (stride s) -> for each window shape (kh, kw): a kh x kw conv (VALID) = FC layer 1 over the
    window's cells, then (num_fc - 1) 1x1 convs = the other FC layers, ReLU after each, then 1x1 convs
    to the class logits (C + 1, background last) and class-specific box deltas (C x 4)
    -> one score vector per window position, for every window at once.

OverFeat's observation: an FC layer applied to the flattened kh x kw x C crop of a feature map is a
kh x kw convolution evaluated at that crop's position, and the following FC layers are 1x1
convolutions; sliding the classifier over the map is one convolution instead of one forward pass per
crop, and neighbouring windows share every feature. Equality that holds (tested to 1e-4 against
float64 NumPy in tests/detection/test_sliding_window.py): the logits of a window equal the FC
classifier run on that window's crop of the feature map. What does not hold exactly: the same
classifier on features of the *image* crop, because the backbone's receptive field reaches past the
window (its features see context, and its zero padding sees the crop's borders).

Windows: their boxes in input pixels, order and labels are defined in windows.py. Each window shape
has its own classifier (its FC layer 1 has a kh x kw kernel); the pyramid scales share them (as
OverFeat applies one classifier at every scale). N = number of windows over all scales and shapes.

Training: windows at IoU >= fg_iou_threshold with a ground-truth box take its class, < bg_iou_threshold
background, between: ignored (windows.py). Foreground/background balance by sampling: per image a
fixed-size random sample of num_samples windows with at most positive_fraction foreground
(`vops.sample_balanced`, Fast R-CNN's 25%); softmax cross-entropy over the sampled windows, and (with
box_regression, OverFeat's regressor, here a second output of the same FC layers) L1 on the
foreground windows' deltas of their class towards the matched box (Fast R-CNN's coding, weights
(10, 10, 5, 5)), both divided by the number of sampled windows (rcnn/box_head.box_head_losses).
Inference: softmax scores without background, boxes = windows (or decoded deltas), windows centred on
canvas padding dropped, then `vops.multiclass_detections` (pre_nms_topk, class-aware NMS).
OverFeat's other steps are left out: offset max-pooling (finer window strides), merging boxes instead
of NMS, and a dedicated regressor network.

Losses: 'loss_cls' (+ 'loss_box_reg'). Metrics: 'num_fg_windows' (per image), 'cls_accuracy',
'fg_cls_accuracy'. Sampling draws from the 'sampling' RNG stream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import vision_jax.ops as vops
from vision_jax.models.backbones.fpn import fpn_kernel_init
from vision_jax.models.classifier import select_feature
from vision_jax.models.detector import Detector
from vision_jax.models.rcnn import box_head
from vision_jax.models.rcnn import windows as window_ops
from vision_jax.models.settings import require

GROUP = "sliding_window"


@dataclasses.dataclass(frozen=True)
class SlidingWindowSettings:
    """Sliding-window detector settings; each field is a key of `config.model.sliding_window`."""

    # The backbone output the windows slide over (its stride s comes from the backbone table).
    feature: str = "C5"
    # Image pyramid: the image is resized by each factor (> 0) and every classifier slides over each.
    scales: tuple[float, ...] = (1.0, 0.5)
    # Window shapes (kh, kw) in feature cells: a window covers kh*s x kw*s resized-image pixels; one
    # classifier per shape, so several shapes give several sizes and aspect ratios (kw / kh).
    window_shapes: tuple[tuple[int, int], ...] = ((3, 3), (5, 5), (3, 5), (5, 3))
    # The classifier: num_fc FC layers of fc_dim + ReLU (the first over the window's cells).
    fc_dim: int = 1024
    num_fc: int = 2
    # Labels (windows.py): IoU >= fg foreground, < bg background, in between ignored.
    fg_iou_threshold: float = 0.5
    bg_iou_threshold: float = 0.4
    # Per image, num_samples windows with at most positive_fraction foreground train each step.
    num_samples: int = 256
    positive_fraction: float = 0.25
    # OverFeat's box regression (class-specific deltas from the same FC layers); False: boxes = windows.
    box_regression: bool = True
    smooth_l1_beta: float = 0.0  # 0 = L1
    # Inference: score threshold, the best pre_nms_topk (window, class) pairs, class-aware NMS.
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    pre_nms_topk: int = 1000
    max_detections: int = 100

    def check(self) -> None:
        for name in ("fg_iou_threshold", "bg_iou_threshold", "positive_fraction", "score_threshold", "nms_threshold"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        require(self.bg_iou_threshold <= self.fg_iou_threshold, "bg_iou_threshold", self.bg_iou_threshold,
                f"must be <= fg_iou_threshold={self.fg_iou_threshold}")  # fmt: skip
        for name in ("fc_dim", "num_fc", "num_samples", "pre_nms_topk", "max_detections"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        require(self.smooth_l1_beta >= 0, "smooth_l1_beta", self.smooth_l1_beta, "must be >= 0")
        require(len(self.scales) >= 1 and min(self.scales) > 0, "scales", self.scales, "must be positive factors")
        require(len(self.window_shapes) >= 1 and all(min(shape) >= 1 for shape in self.window_shapes),
                "window_shapes", self.window_shapes, "must be (kh, kw) pairs of cells >= 1")  # fmt: skip
        require(len(set(self.window_shapes)) == len(self.window_shapes), "window_shapes", self.window_shapes,
                "has a repeated shape")  # fmt: skip


class WindowClassifier(nn.Module):
    """The FC window classifier of one window shape, run as convolutions (module docstring).

    __call__(features float [B, h, w, C]) -> (logits float32 [B, P, C + 1], deltas float32 [B, P, K, 4]
    or None), P = (h - kh + 1) * (w - kw + 1) row-major. Parameters: 'fc1' kernel [kh, kw, C, D] (as an
    FC layer: its kernel reshaped to [kh * kw * C, D] on the row-major flattened crop), 'fc2'.. [1, 1,
    D, D], 'cls_score' [1, 1, D, K + 1], 'bbox_pred' [1, 1, D, 4K]; initialised as the Fast R-CNN box
    head (box_head.py).
    """

    window_shape: tuple[int, int]
    num_classes: int
    fc_dim: int
    num_fc: int
    box_regression: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, features: jax.Array):
        x = features
        for index in range(self.num_fc):
            kernel = self.window_shape if index == 0 else (1, 1)
            conv = nn.Conv(self.fc_dim, kernel, padding="VALID", dtype=self.dtype, kernel_init=fpn_kernel_init,
                           name=f"fc{index + 1}")  # fmt: skip
            x = nn.relu(conv(x))
        batch = x.shape[0]
        logits = nn.Conv(self.num_classes + 1, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.normal(0.01),
                         name="cls_score")(x)  # fmt: skip
        logits = logits.reshape(batch, -1, self.num_classes + 1).astype(jnp.float32)
        if not self.box_regression:
            return logits, None
        deltas = nn.Conv(4 * self.num_classes, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.normal(0.001),
                         name="bbox_pred")(x)  # fmt: skip
        return logits, deltas.reshape(batch, -1, self.num_classes, 4).astype(jnp.float32)


class SlidingWindowDetector(Detector):
    """OverFeat-style sliding-window detector (module docstring) on the contract of models/detector.py.

    Attributes:
      backbone: module (images, train=) -> dict of feature maps; `settings.feature` picks the map.
      num_classes: C.
      feature_stride: s, input pixels per cell of that map (backbones.feature_strides).
      settings: every hyper-parameter (SlidingWindowSettings, config.model.sliding_window).
      dtype: compute dtype; outputs are float32.
    """

    backbone: nn.Module
    num_classes: int
    feature_stride: int
    settings: SlidingWindowSettings = SlidingWindowSettings()
    dtype: Any = None

    def setup(self):
        s = self.settings
        s.check()
        self.classifiers = [
            WindowClassifier(tuple(shape), self.num_classes, s.fc_dim, s.num_fc, s.box_regression, dtype=self.dtype,
                             name=f"window_{shape[0]}x{shape[1]}")  # fmt: skip
            for shape in s.window_shapes
        ]

    def pyramid_features(self, images: jax.Array, train: bool) -> list[jax.Array]:
        """One feature map [B, h_k, w_k, C] per pyramid scale k (image resized bilinearly, antialiased)."""
        batch, height, width, channels = images.shape
        features = []
        for scale in self.settings.scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            if size != (height, width):
                resized = jax.image.resize(images, (batch, *size, channels), "linear")
            else:
                resized = images
            outputs = self.backbone(resized, train=train)
            features.append(select_feature(outputs, self.settings.feature, f"config.model.{GROUP}.feature"))
        return features

    def windows(self, image_shape: tuple[int, int], feature_shapes: list[tuple[int, int]]) -> np.ndarray:
        """float32 [N, 4] input-pixel boxes of every window, in the scores' order (windows.py)."""
        height, width = image_shape
        boxes = []
        for scale, feature_shape in zip(self.settings.scales, feature_shapes):
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            factors = (size[0] / height, size[1] / width)
            for shape in self.settings.window_shapes:
                boxes.append(window_ops.window_boxes(feature_shape, self.feature_stride, shape, factors))
        return np.concatenate(boxes)

    # --- the detector contract (models/detector.py) ---------------------------------------------
    def forward(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        """-> {'logits' float32 [B, N, C + 1], 'deltas' float32 [B, N, C, 4] (with box_regression),
        'windows' float32 [N, 4] input pixels (constant)}, windows in windows.py's order."""
        return self.window_outputs(self.pyramid_features(images, train), images.shape[1:3])

    def window_outputs(self, features: list[jax.Array], image_shape: tuple[int, int]) -> dict[str, jax.Array]:
        """Every classifier over every pyramid level's features (`pyramid_features`) -> `forward`'s dict;
        a method of its own so that scripts/compare_detectors.py times the per-window heads apart."""
        windows = self.windows(image_shape, [f.shape[1:3] for f in features])  # checks they fit
        logits, deltas = [], []
        for feature in features:
            for classifier in self.classifiers:
                window_logits, window_deltas = classifier(feature)
                logits.append(window_logits)
                deltas.append(window_deltas)
        outputs = {"logits": jnp.concatenate(logits, 1), "windows": jnp.asarray(windows)}
        if self.settings.box_regression:
            outputs["deltas"] = jnp.concatenate(deltas, 1)
        return outputs

    def losses(self, outputs: dict, images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        """Window labels, balanced sampling, cross-entropy (+ box regression) (module docstring)."""
        s = self.settings
        windows, logits = outputs["windows"], outputs["logits"]
        batch, num_windows = logits.shape[:2]
        deltas = outputs.get("deltas", jnp.zeros((batch, num_windows, self.num_classes, 4), jnp.float32))

        def per_image(image_size, gt_boxes, gt_classes, gt_valid, gt_is_crowd, key):
            labels, matched = window_ops.window_labels(
                windows, window_ops.window_valid(windows, image_size), gt_boxes, gt_classes, gt_valid, gt_is_crowd,
                num_classes=self.num_classes, fg_iou_threshold=s.fg_iou_threshold,
                bg_iou_threshold=s.bg_iou_threshold,
            )  # fmt: skip
            binary = jnp.where(labels < 0, -1, (labels < self.num_classes).astype(jnp.int32))
            index, valid = vops.sample_balanced(binary, key, s.num_samples, s.positive_fraction)
            index = jnp.where(valid, index, 0)
            matched_boxes = gt_boxes[matched[index]] if gt_boxes.shape[0] else windows[index]  # G = 0: no foreground
            box_targets = vops.encode_boxes(matched_boxes, windows[index], weights=box_head.BOX_WEIGHTS)
            return index, valid, labels[index], box_targets

        keys = jax.random.split(self.make_rng("sampling"), batch)
        index, valid, classes, box_targets = jax.vmap(per_image)(
            image_sizes, targets["boxes"], targets["classes"], targets["valid"], targets["is_crowd"], keys
        )
        take = jax.vmap(lambda values, rows: values[rows])
        classes = jnp.where(valid, classes, self.num_classes)
        foreground = valid & (classes < self.num_classes)
        terms = box_head.box_head_losses(
            take(logits, index).reshape(-1, self.num_classes + 1),
            take(deltas, index).reshape(-1, self.num_classes, 4),
            classes.reshape(-1),
            valid.reshape(-1),
            jnp.where(foreground[..., None], box_targets, 0.0).reshape(-1, 4),
            smooth_l1_beta=s.smooth_l1_beta,
        )
        losses = {"loss_cls": terms["loss_cls"]}
        if s.box_regression:
            losses["loss_box_reg"] = terms["loss_box_reg"]
        metrics = {
            "num_fg_windows": terms["num_fg"] / batch,
            "cls_accuracy": terms["cls_accuracy"],
            "fg_cls_accuracy": terms["fg_cls_accuracy"],
        }
        return {"losses": losses, "metrics": metrics}

    def detect(self, outputs: dict, images: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        """Per-window class scores (and regressed boxes) -> `vops.multiclass_detections`."""
        s = self.settings
        windows = outputs["windows"]

        def per_image(logits, deltas, image_size):
            boxes = windows if deltas is None else vops.decode_boxes(deltas, windows[:, None, :], box_head.BOX_WEIGHTS)
            return vops.multiclass_detections(
                boxes,
                vops.foreground_scores(logits),
                image_size,
                score_threshold=s.score_threshold,
                nms_threshold=s.nms_threshold,
                max_detections=s.max_detections,
                valid=window_ops.window_valid(windows, image_size),
                pre_nms_topk=s.pre_nms_topk,
            )

        return jax.vmap(per_image)(outputs["logits"], outputs.get("deltas"), image_sizes)

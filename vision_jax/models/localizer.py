"""Single-object localizer: one class and one box per image (ILSVRC's localization task).

A backbone feature map is pooled once; a class head and a box head share the pooled vector.

Box convention of the model output: normalised (cx, cy, w, h) in [0, 1], i.e. centre and size
as fractions of the network input's width (x, w) and height (y, h), the sigmoid of a dense
layer. `normalized_cxcywh_to_xyxy` converts them to the project's (x1, y1, x2, y2) pixels.
The box head starts at zero weights and bias, so every initial prediction is the centred box
(0.5, 0.5, 0.5, 0.5), a sane prior, rather than a random one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.models.classifier import select_feature
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.settings import require, settings_from_config

POOLINGS = ("avg", "flatten")


@dataclasses.dataclass(frozen=True)
class LocalizerSettings:
    """The localizer's hyper-parameters; each field is a key of `config.model.localizer`."""

    feature: str = "C5"  # the backbone output that is pooled
    # 'avg' (global average; any input size) or 'flatten' (keeps where things are in the map, at the
    # price of a head tied to one input size)
    pooling: str = "avg"
    hidden_features: int = 0  # if > 0, a shared dense + ReLU layer of this width before both heads
    dropout_rate: float = 0.0  # on the shared vector, before both heads

    def check(self) -> None:
        require(self.pooling in POOLINGS, "pooling", self.pooling, f"is not one of {POOLINGS}")
        require(self.hidden_features >= 0, "hidden_features", self.hidden_features, "must be >= 0")
        require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", self.dropout_rate, "must be in [0, 1)")


def build_localizer(config: ml_collections.ConfigDict, num_classes: int) -> "Localizer":
    """The Localizer of `config.model` (backbone keys + the `localizer` group)."""
    return Localizer(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        settings=settings_from_config(LocalizerSettings, config.model.get("localizer"), "config.model.localizer"),
        dtype=compute_dtype(config.model),
    )


class Localizer(nn.Module):
    """Backbone + shared pooled features + class head + box head.

    Attributes:
      backbone: a module mapping (images, train) to a dict of features.
      num_classes: number of class logits.
      settings: `LocalizerSettings` (config.model.localizer): `feature`, `pooling`,
        `hidden_features`, `dropout_rate` (needs rngs={'dropout': key} when training with rate > 0).
      dtype: compute dtype of the heads; outputs are float32.

    __call__(images: float32 [B, H, W, C], train: bool) ->
      {'logits': float32 [B, num_classes],
       'boxes': float32 [B, 4] normalised (cx, cy, w, h) in [0, 1]}.
    """

    backbone: nn.Module
    num_classes: int
    settings: LocalizerSettings = LocalizerSettings()
    dtype: Any = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        s = self.settings
        if s.pooling not in POOLINGS:
            raise ValueError(f"unknown localizer pooling {s.pooling!r}; expected one of {list(POOLINGS)}")
        x = select_feature(self.backbone(images, train=train), s.feature, "config.model.localizer.feature").astype(jnp.float32)
        if s.pooling == "avg":
            x = jnp.mean(x, axis=(1, 2))
        else:
            x = x.reshape(x.shape[0], -1)
        if s.hidden_features > 0:
            x = nn.relu(nn.Dense(s.hidden_features, dtype=self.dtype, name="hidden")(x))
        x = nn.Dropout(s.dropout_rate, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="class_head")(x)
        box_logits = nn.Dense(4, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="box_head")(x)
        return {"logits": logits.astype(jnp.float32), "boxes": jax.nn.sigmoid(box_logits.astype(jnp.float32))}


def normalized_cxcywh_to_xyxy(
    boxes: jax.Array, image_height: int | jax.Array, image_width: int | jax.Array
) -> jax.Array:
    """Localizer boxes -> project boxes.

    boxes: [..., 4] normalised (cx, cy, w, h); image_height/width: the network input's size in
    pixels (scalars, or arrays broadcasting against boxes[..., 0]).
    Returns [..., 4] float32 (x1, y1, x2, y2) in input pixels.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 coordinates in the last axis, got shape {boxes.shape}")
    cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack(
        [
            (cx - w / 2) * image_width,
            (cy - h / 2) * image_height,
            (cx + w / 2) * image_width,
            (cy + h / 2) * image_height,
        ],
        axis=-1,
    )

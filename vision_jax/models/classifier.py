"""Image classifier: a backbone's feature map, pooled, then a dense head -> class logits.

Two heads:
  'gap'     global average pool + one dense layer (ResNet's head; works for every backbone).
  'vgg_fc'  VGG's classic head: adaptive average pool to 7x7, flatten, fc6 and fc7 (4096 each,
            ReLU + dropout), then the class layer. With VGG-16 at 224² pool5 is already 7x7 and
            the parameter count equals torchvision's vgg16 (138,357,544 for 1000 classes).
            The flatten order is (h, w, c) (NHWC); torchvision's is (c, h, w), so a converter
            of torchvision fc6 weights must permute their rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.settings import require, settings_from_config

HEADS = ("gap", "vgg_fc")
VGG_FC_POOL_SIZE = 7
# torchvision initialises VGG's linear layers with N(0, 0.01) and zero bias.
vgg_fc_kernel_init = nn.initializers.normal(stddev=0.01)


def select_feature(features: dict[str, jax.Array], name: str, key: str = "feature") -> jax.Array:
    """features[name], or a ValueError naming the setting `key` that chose it (e.g.
    'config.model.classifier.feature') and the backbone's outputs."""
    if name not in features:
        raise ValueError(f"{key}={name!r} is not an output of the backbone; it gives {sorted(features)}")
    return features[name]


def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] averaging weights with torch's AdaptiveAvgPool bins.

    Bin i covers [floor(i * in / out), ceil((i + 1) * in / out)): bins tile the input when
    in >= out and overlap (repeat pixels) when in < out.
    """
    weights = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def adaptive_avg_pool(x: jax.Array, output_size: int) -> jax.Array:
    """torch.nn.AdaptiveAvgPool2d for NHWC: [B, H, W, C] -> [B, output_size, output_size, C].

    Shapes are static, so the bins become two constant averaging matrices (computed in float32).
    """
    rows = jnp.asarray(_adaptive_pool_matrix(x.shape[1], output_size))
    cols = jnp.asarray(_adaptive_pool_matrix(x.shape[2], output_size))
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x.astype(jnp.float32), cols)


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
    """The classifier's hyper-parameters; each field is a key of `config.model.classifier`."""

    head: str = "gap"  # 'gap' (global average pool + dense) or 'vgg_fc' (VGG's fc6/fc7)
    feature: str = "C5"  # the backbone output the head reads
    dropout_rate: float = 0.0
    fc_features: int = 4096  # fc6 / fc7 width of the 'vgg_fc' head

    def check(self) -> None:
        require(self.head in HEADS, "head", self.head, f"is not one of {HEADS}")
        require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", self.dropout_rate, "must be in [0, 1)")


def build_classifier(config: ml_collections.ConfigDict, num_classes: int) -> "Classifier":
    """The Classifier of `config.model` (backbone keys + the `classifier` group)."""
    return Classifier(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        settings=settings_from_config(ClassifierSettings, config.model.get("classifier"), "config.model.classifier"),
        dtype=compute_dtype(config.model),
    )


class Classifier(nn.Module):
    """Backbone + head -> logits.

    Attributes:
      backbone: a module mapping (images, train) to a dict of features (see backbones).
      num_classes: number of logits.
      settings: `ClassifierSettings` (config.model.classifier): `feature`, `head` (module
        docstring), `dropout_rate` (before the class layer for 'gap', after fc6 and fc7 for
        'vgg_fc', where torchvision uses 0.5; needs rngs={'dropout': key} when train=True and
        rate > 0) and `fc_features` (fc6/fc7 width for 'vgg_fc', 4096 in VGG).
      dtype: compute dtype of the head; logits are returned in float32.

    __call__(images: float32 [B, H, W, C], train: bool) -> logits float32 [B, num_classes].
    """

    backbone: nn.Module
    num_classes: int
    settings: ClassifierSettings = ClassifierSettings()
    dtype: Any = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        s = self.settings
        if s.head not in HEADS:
            raise ValueError(f"unknown classifier head {s.head!r}; expected one of {list(HEADS)}")
        x = select_feature(self.backbone(images, train=train), s.feature, "config.model.classifier.feature")
        dense = lambda features, name, **kw: nn.Dense(features, dtype=self.dtype, name=name, **kw)
        if s.head == "gap":
            # Mean in float32: a bf16 sum over thousands of pixels would lose the low bits.
            x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
            x = nn.Dropout(s.dropout_rate, deterministic=not train)(x)
            logits = dense(self.num_classes, "head")(x)
        else:
            x = adaptive_avg_pool(x, VGG_FC_POOL_SIZE).reshape(x.shape[0], -1)
            for name in ("fc6", "fc7"):
                x = nn.relu(dense(s.fc_features, name, kernel_init=vgg_fc_kernel_init)(x))
                x = nn.Dropout(s.dropout_rate, deterministic=not train)(x)
            logits = dense(self.num_classes, "head", kernel_init=vgg_fc_kernel_init)(x)
        return logits.astype(jnp.float32)

"""R-CNN's CNN: a backbone on one warped region, pooled, fully connected layers, and a classifier over the C
object classes + background (last, index C). The fine-tuning stage trains it; the SVMs read its last fully
connected layer ('features', the paper's fc7) and the box regressors its pooled map ('pooled', pool5).

    model = build_region_cnn(config, num_classes)
    out = model.apply(variables, crops, train=False)   # crops float32 [N, S, S, 3] (region_warp.py)
    out['logits'] [N, C + 1], out['features'] [N, D_fc], out['pooled'] [N, D_pool]  (float32)
    variables = model.init(key, **region_cnn_init_inputs(settings), train=False)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.models.classifier import VGG_FC_POOL_SIZE, adaptive_avg_pool, select_feature, vgg_fc_kernel_init
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.rcnn.rcnn_settings import RegionCNNSettings
from vision_jax.models.settings import settings_from_config

GROUP = "rcnn"


class RegionCNN(nn.Module):
    """Backbone + pooling + settings.num_fc FC layers (ReLU, dropout) + classifier over num_classes + 1.

    __call__(crops float [N, S, S, 3], train) -> {'logits', 'features', 'pooled'} (module docstring);
    with num_fc = 0 the features are the pooled map. Dropout needs rngs={'dropout': key} when training.
    """

    backbone: nn.Module
    num_classes: int
    settings: RegionCNNSettings = RegionCNNSettings()
    dtype: Any = None

    @nn.compact
    def __call__(self, crops: jax.Array, train: bool) -> dict[str, jax.Array]:
        s = self.settings
        x = select_feature(self.backbone(crops, train=train), s.feature, "config.model.rcnn.feature")
        if s.head == "gap":
            pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # float32 mean: bf16 sums lose bits
        else:
            pooled = adaptive_avg_pool(x, VGG_FC_POOL_SIZE).reshape(x.shape[0], -1)
        hidden = pooled
        for layer in range(s.num_fc):
            dense = nn.Dense(s.fc_dim, dtype=self.dtype, kernel_init=vgg_fc_kernel_init, name=f"fc{6 + layer}")
            hidden = nn.Dropout(s.dropout_rate, deterministic=not train)(nn.relu(dense(hidden)))
        logits = nn.Dense(self.num_classes + 1, dtype=self.dtype, kernel_init=vgg_fc_kernel_init, name="cls_score")(hidden)
        return {"logits": logits.astype(jnp.float32), "features": hidden.astype(jnp.float32),
                "pooled": pooled.astype(jnp.float32)}  # fmt: skip


def rcnn_settings_from_config(config: ml_collections.ConfigDict) -> RegionCNNSettings:
    return settings_from_config(RegionCNNSettings, config.model.get(GROUP), f"config.model.{GROUP}")


def build_region_cnn(config: ml_collections.ConfigDict, num_classes: int) -> RegionCNN:
    """R-CNN's CNN ('rcnn') for num_classes object classes (+ background)."""
    return RegionCNN(
        backbone=backbone_from_config(config.model),
        num_classes=num_classes,
        settings=rcnn_settings_from_config(config),
        dtype=compute_dtype(config.model),
    )


def region_cnn_init_inputs(settings: RegionCNNSettings) -> dict[str, np.ndarray]:
    """The keyword inputs that initialise a RegionCNN: one zero crop, float32 [1, S, S, 3] (S = crop_size)."""
    return {"crops": np.zeros((1, settings.crop_size, settings.crop_size, 3), np.float32)}

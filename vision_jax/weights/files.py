"""One reader for weight files: `load_state_dict(path) -> {name: np.ndarray}`.

Weight files are data, never code (docs/DESIGN.md):

  .pth / .pt / .bin (PyTorch)  `torch.load(weights_only=True)` when torch is importable, otherwise
                               our restricted unpickler (torch_pickle.py); both refuse any global
                               that is not a tensor, storage or container.
  .safetensors                 the `safetensors` package's NumPy API.
  .npz                         `np.load(allow_pickle=False)`.

A checkpoint that nests its weights (`{'state_dict': {...}, 'epoch': 3}` or `{'model': {...}}`)
is unwrapped; nested dicts are flattened with '.' joins (torch's own naming); entries that are
not arrays (epoch counters, metadata) are dropped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vision_jax.weights.torch_pickle import read_torch_file

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
READERS = ("auto", "torch", "restricted")
# Checkpoint keys under which training scripts commonly keep the model's state dict.
NESTED_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def load_state_dict(path: str, reader: str = "auto") -> dict[str, np.ndarray]:
    """The arrays of the weights file at `path`, by name, as NumPy arrays (float16 and bfloat16
    kept as such; bfloat16 is ml_dtypes.bfloat16).

    reader (PyTorch files only): 'auto' = torch.load(weights_only=True) if torch is importable,
    else the restricted unpickler; 'torch' or 'restricted' to force one.
    """
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; expected one of {list(READERS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} not found")
    lower = path.lower()
    if lower.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return dict(load_file(path))
    if lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    if not lower.endswith(TORCH_SUFFIXES):
        raise ValueError(
            f"{path!r}: unknown weights format; expected one of {TORCH_SUFFIXES + ('.safetensors', '.npz')}"
        )
    obj = _torch_load(path) if reader == "torch" or (reader == "auto" and _torch_available()) else read_torch_file(path)
    return _flatten_state_dict(obj, path)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_load(path: str) -> Any:
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    return _tensors_to_numpy(obj, torch)


def _tensors_to_numpy(obj: Any, torch) -> Any:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            import ml_dtypes

            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors_to_numpy(v, torch) for v in obj)
    return obj


def _flatten_state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    for key in NESTED_STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    flat: dict[str, np.ndarray] = {}

    def walk(tree: dict, prefix: str) -> None:
        for name, value in tree.items():
            full = f"{prefix}{name}"
            if isinstance(value, np.ndarray):
                flat[full] = value
            elif isinstance(value, dict):
                walk(value, full + ".")

    walk(obj, "")
    if not flat:
        raise ValueError(f"{path!r} holds no arrays")
    return flat

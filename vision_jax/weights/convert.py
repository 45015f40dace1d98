"""State dicts (PyTorch names and layouts) into Flax variables, with every mismatch named.

A `Layout` lists the layers of one architecture: where each layer's variables live in the Flax
tree and under which prefix the file keeps them (vision_jax.weights.layouts). The conversions:

  'conv'   weight [O, I/groups, kh, kw] (OIHW) -> params kernel [kh, kw, I/groups, O] (HWIO; a
           depthwise conv is I/groups = 1 with feature_group_count = O in Flax); bias if present.
  'bn'     weight, bias -> params scale, bias; running_mean, running_var -> batch_stats mean, var
           (num_batches_tracked is read and dropped: Flax keeps no counter).
  'dense'  weight [O, I] -> params kernel [I, O]; bias.
  'dense_after_flatten'  as 'dense', for a layer after torch's flatten of an NCHW map [C, H, W]:
           its input rows are ordered (c, h, w), Flax's NHWC flatten orders them (h, w, c), so
           rows are permuted (torchvision VGG's fc6 after the 7x7 pool).

`convert_state_dict` also checks the result against the model's variables (`template`, e.g.
`jax.eval_shape(model.init, ...)`) and reports, by name, keys the model needs that the file
lacks (missing), file keys nothing uses (unexpected) and shapes that disagree (mis-shaped).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

KINDS = ("conv", "bn", "dense", "dense_after_flatten")
_REQUIRED = {
    "conv": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight",),
    "dense_after_flatten": ("weight",),
}
_OPTIONAL = {"conv": ("bias",), "bn": ("num_batches_tracked",), "dense": ("bias",), "dense_after_flatten": ("bias",)}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: its module path in Flax, its key prefix in the file, its kind (module docstring).

    flatten_spatial: (H, W) of the NCHW map torch flattened before a 'dense_after_flatten' layer.
    """

    flax_path: tuple[str, ...]
    file_prefix: str
    kind: str
    flatten_spatial: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; expected one of {KINDS}")
        if (self.kind == "dense_after_flatten") != (self.flatten_spatial is not None):
            raise ValueError("flatten_spatial is given exactly for 'dense_after_flatten' layers")


@dataclasses.dataclass(frozen=True)
class Layout:
    """All layers of an architecture, and the file prefixes deliberately not loaded (e.g. the
    classifier when only the backbone is wanted)."""

    layers: tuple[Layer, ...]
    ignored_prefixes: tuple[str, ...] = ()


@dataclasses.dataclass
class MismatchReport:
    """What did not match between a file and a model, each entry a sentence naming the key."""

    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    mis_shaped: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def __str__(self) -> str:
        lines = []
        for title, entries in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("mis-shaped", self.mis_shaped),
        ):
            if entries:
                lines.append(f"{len(entries)} {title}:")
                lines.extend(f"  {entry}" for entry in entries)
        return "\n".join(lines) or "all keys match"


class WeightsMismatchError(ValueError):
    """The weights file and the model disagree; `report` names every difference."""

    def __init__(self, report: MismatchReport):
        super().__init__(f"weights do not match the model:\n{report}")
        self.report = report


def _convert_layer(layer: Layer, tensors: dict[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
    """{(collection, *flax_path, leaf): array} of one layer from its tensors {suffix: array}."""
    path = layer.flax_path
    out: dict[tuple[str, ...], np.ndarray] = {}
    if layer.kind == "bn":
        out[("params", *path, "scale")] = tensors["weight"]
        out[("params", *path, "bias")] = tensors["bias"]
        out[("batch_stats", *path, "mean")] = tensors["running_mean"]
        out[("batch_stats", *path, "var")] = tensors["running_var"]
        return out
    weight = tensors["weight"]
    if layer.kind == "conv":
        if weight.ndim != 4:
            raise _ShapeError(f"expected a 4-d conv weight, got shape {weight.shape}")
        kernel = weight.transpose(2, 3, 1, 0)
    else:
        if weight.ndim != 2:
            raise _ShapeError(f"expected a 2-d linear weight, got shape {weight.shape}")
        kernel = weight.T
        if layer.kind == "dense_after_flatten":
            height, width = layer.flatten_spatial
            outputs, inputs = weight.shape
            if inputs % (height * width):
                raise _ShapeError(f"{inputs} inputs are not C x {height} x {width}")
            channels = inputs // (height * width)
            kernel = weight.reshape(outputs, channels, height, width).transpose(2, 3, 1, 0).reshape(inputs, outputs)
    out[("params", *path, "kernel")] = np.ascontiguousarray(kernel)
    if "bias" in tensors:
        out[("params", *path, "bias")] = tensors["bias"]
    return out


class _ShapeError(ValueError):
    pass


def _name(path: tuple[str, ...]) -> str:
    return "/".join(path)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    layout: Layout,
    template: Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
    dtype: Any = np.float32,
) -> tuple[dict[str, Any], MismatchReport]:
    """Flax variables {'params': ..., 'batch_stats': ...} from a state dict, and what mismatched.

    state_dict: {file key: array} (load_state_dict). template: the model's variables or their
      shapes (any tree of objects with .shape); None = check the file against the layout only.
    strict: raise WeightsMismatchError unless everything matches; otherwise return the variables
      that could be converted (mis-shaped ones dropped) with the report.
    Floating arrays are cast to `dtype` (parameters are float32 here); integer arrays are kept.
    """
    report = MismatchReport()
    converted: dict[tuple[str, ...], np.ndarray] = {}
    sources: dict[tuple[str, ...], str] = {}
    used: set[str] = set()
    incomplete: set[tuple[str, ...]] = set()  # layers already reported missing from the file
    for layer in layout.layers:
        prefix = f"{layer.file_prefix}." if layer.file_prefix else ""
        names = {suffix: prefix + suffix for suffix in _REQUIRED[layer.kind] + _OPTIONAL[layer.kind]}
        used.update(name for name in names.values() if name in state_dict)
        absent = [names[s] for s in _REQUIRED[layer.kind] if names[s] not in state_dict]
        if absent:
            report.missing.extend(f"{name} (for {_name(layer.flax_path)}) is not in the file" for name in absent)
            incomplete.add(layer.flax_path)
            continue
        tensors = {suffix: np.asarray(state_dict[name]) for suffix, name in names.items() if name in state_dict}
        try:
            variables = _convert_layer(layer, tensors)
        except _ShapeError as error:
            report.mis_shaped.append(f"{prefix}weight (for {_name(layer.flax_path)}): {error}")
            continue
        for path, array in variables.items():
            converted[path] = array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array
            sources[path] = names.get(_source_suffix(layer.kind, path[-1]), prefix + path[-1])
    for name in state_dict:
        if name not in used and not name.startswith(layout.ignored_prefixes):
            report.unexpected.append(f"{name} {tuple(np.shape(state_dict[name]))} in the file is used by no layer")

    if template is not None:
        expected = traverse_util.flatten_dict(dict(template))
        for path in sorted(set(expected) - set(converted)):
            if path[1:-1] in incomplete:
                continue
            report.missing.append(
                f"{_name(path)} {tuple(expected[path].shape)} of the model has no weights in the file"
            )
        for path in sorted(set(converted) - set(expected)):
            report.unexpected.append(f"{sources[path]} -> {_name(path)} is not a variable of the model")
            del converted[path]
        for path in sorted(set(converted) & set(expected)):
            if tuple(converted[path].shape) != tuple(expected[path].shape):
                report.mis_shaped.append(
                    f"{sources[path]} -> {_name(path)}: file gives {tuple(converted[path].shape)}, "
                    f"the model has {tuple(expected[path].shape)}"
                )
                del converted[path]
    if strict and not report.ok:
        raise WeightsMismatchError(report)
    return traverse_util.unflatten_dict(converted), report


def _source_suffix(kind: str, leaf: str) -> str:
    if kind == "bn":
        return {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
    return {"kernel": "weight", "bias": "bias"}[leaf]

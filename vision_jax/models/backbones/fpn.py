"""Feature Pyramid Network (Lin et al., 2017) on top of a backbone's C2..C5, as in detectron2.

For each input level l (coarsest first): lateral_l = 1x1 conv(C_l); inner_l = lateral_l +
nearest_upsample(inner_{l+1}) (inner of the coarsest level is its lateral); P_l = 3x3 conv(inner_l).
P6 = max-pool with a 1x1 window and stride 2 of P5 (detectron2's LastLevelMaxPool, torchvision's
LastLevelMaxPool): it is P5 subsampled at even rows and columns, so an odd-sized P5 of n gives
ceil(n / 2).

Nearest upsampling maps the coarse map onto the finer map's exact shape: output pixel i reads input
pixel floor(i * n_coarse / n_fine) (torch's F.interpolate(size=..., mode='nearest')); for the usual
exact factor 2 this is a plain 2x repetition. Weights are initialised as detectron2's
c2_xavier_fill (kaiming uniform, a=1: U(+-sqrt(3 / fan_in))) with zero biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# detectron2's c2_xavier_fill: kaiming_uniform_(a=1) = variance 1 / fan_in, uniform.
fpn_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def nearest_resize(x: jax.Array, height: int, width: int) -> jax.Array:
    """[B, h, w, C] -> [B, height, width, C], pixel i reading floor(i * h / height) (torch 'nearest')."""
    rows = (jnp.arange(height) * x.shape[1]) // height
    cols = (jnp.arange(width) * x.shape[2]) // width
    return x[:, rows][:, :, cols]


class FPN(nn.Module):
    """Top-down feature pyramid with lateral connections.

    Attributes:
      channels: output channels of every P level (RCNNSettings.fpn_channels; 256 in the paper).
      in_levels: backbone feature names, finest first, e.g. ('C2', 'C3', 'C4', 'C5'); output l of
        input 'C<l>' is 'P<l>'.
      top_block: 'maxpool' adds P(l_max + 1) by 1x1/2 max-pooling of the coarsest P; 'none' adds
        nothing.
      dtype: compute dtype (parameters stay float32).

    __call__(features: {'C2': [B, H/4, W/4, C2], ...}) -> {'P2': [B, H/4, W/4, channels], ...,
    'P6': [B, ceil(H/64), ceil(W/64), channels]}.
    """

    channels: int
    in_levels: Sequence[str] = ("C2", "C3", "C4", "C5")
    top_block: str = "maxpool"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[str, jax.Array]) -> dict[str, jax.Array]:
        if self.top_block not in ("maxpool", "none"):
            raise ValueError(f"unknown FPN top_block {self.top_block!r}; expected 'maxpool' or 'none'")
        missing = [name for name in self.in_levels if name not in features]
        if missing:
            raise ValueError(f"FPN needs backbone features {missing}; the backbone gives {sorted(features)}")
        if not all(name.startswith("C") and name[1:].isdigit() for name in self.in_levels):
            raise ValueError(f"FPN in_levels must be named 'C<level>', got {tuple(self.in_levels)}")
        conv = lambda size, name: nn.Conv(
            self.channels,
            (size, size),
            padding=((size // 2,) * 2,) * 2,
            dtype=self.dtype,
            kernel_init=fpn_kernel_init,
            name=name,
        )
        outputs = {}
        inner = None
        for name in reversed(tuple(self.in_levels)):
            level = int(name[1:])
            lateral = conv(1, f"lateral{level}")(features[name])
            if inner is not None:
                lateral = lateral + nearest_resize(inner, lateral.shape[1], lateral.shape[2])
            inner = lateral
            outputs[f"P{level}"] = conv(3, f"output{level}")(inner)
        if self.top_block == "maxpool":
            top = max(int(name[1:]) for name in self.in_levels)
            outputs[f"P{top + 1}"] = outputs[f"P{top}"][:, ::2, ::2]
        return dict(sorted(outputs.items(), key=lambda item: int(item[0][1:])))

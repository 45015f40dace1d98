"""Region-of-interest feature extraction: RoIAlign, RoIPool and multilevel (FPN) RoIAlign.

Conventions shared by every op here:
  * features: float [B, H, W, C], NHWC. An NCHW map is not refused by its shape alone (it is a
    4-d array too) and gives a wrong-shaped result; pass `channels=C` to have the layout
    checked: a last axis of another length is refused, naming NCHW when axis 1 has C entries.
  * Under `jit`, the arguments that set the output shape or choose a code path (`output_size`,
    `sampling_ratio`, `aligned`, `max_sampling_ratio`, `channels`) must be static: e.g.
    `jax.jit(roi_align, static_argnames=("output_size", "sampling_ratio", "aligned"))`. Traced
    ones are refused with a TypeError that names them; `spatial_scale(s)` may be traced.
  * boxes: float [K, 4], (x1, y1, x2, y2) in input-image pixels; `spatial_scale` maps them onto
    the feature map (1/stride). Boxes may be degenerate or lie partly or wholly outside the map:
    the ops follow torchvision's CPU kernels for those cases and never produce NaN.
  * box_indices: int [K], the image of `features` each box is read from (must be in [0, B)).
  * Outputs are [K, oh, ow, C] with K static, so every op jits once per shape, vmaps, and is
    differentiable w.r.t. `features` (gradients are scatter-adds of the forward gathers).

RoIAlign reads the feature map through gathers of 4 bilinear neighbours per sample point from
the flattened, zero-padded map ([B*(H+1)*(W+1), C], one contiguous C-vector per gather), with
indices and weights computed once per RoI and axis (bilinear weights are separable), so the cost
is K*oh*ow*grid^2*4*C multiply-adds -- independent of the map size -- instead of a dense
per-RoI resample of the whole map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Unrolling more gathers than this into one fused loop makes compile time grow for no speed-up;
# larger sampling grids loop over the grid's rows instead.
_MAX_UNROLLED_GATHERS = 64


def _pair(size, name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def _require_static(op: str, **arguments) -> None:
    """TypeError naming the arguments that are traced: they set shapes or choose code paths."""
    traced = [name for name, value in arguments.items()
              if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))]
    if traced:
        raise TypeError(
            f"{op}: {', '.join(traced)} {'is' if len(traced) == 1 else 'are'} traced under jit but must be static "
            f"(they set the output shape or choose a code path): mark them static, e.g. "
            f"jax.jit({op}, static_argnames={tuple(traced)!r}), or close over them with functools.partial"
        )


def _check_layout(features: jax.Array, channels: int | None, what: str = "features") -> None:
    """ValueError unless features is [B, H, W, C] (with C == channels when given)."""
    if features.ndim != 4:
        raise ValueError(f"{what} must be [B, H, W, C] (NHWC), got shape {features.shape}")
    if channels is not None and features.shape[3] != channels:
        hint = (f"; it looks NCHW (axis 1 has {channels} entries): pass features.transpose(0, 2, 3, 1)"
                if features.shape[1] == channels else "")
        raise ValueError(
            f"{what} has shape {features.shape}, whose last axis ({features.shape[3]}) is not the channels={channels} "
            f"given: features must be NHWC [B, H, W, C]{hint}"
        )


def _check_rois(features: jax.Array, boxes: jax.Array, box_indices: jax.Array) -> None:
    if features.ndim != 4:
        raise ValueError(f"features must be [B, H, W, C] (NHWC), got shape {features.shape}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [K, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    if box_indices.shape != boxes.shape[:1]:
        raise ValueError(f"box_indices must be [K]={boxes.shape[:1]}, got shape {box_indices.shape}")
    if not jnp.issubdtype(box_indices.dtype, jnp.integer):
        raise ValueError(f"box_indices must be an integer array, got dtype {box_indices.dtype}")


def _ieee_divide(numerator: jax.Array, denominator: float) -> jax.Array:
    """numerator / denominator rounded like IEEE float32 division.

    XLA rewrites x / constant as x * (1 / constant), which is off by an ulp for e.g. 14 / 7 and
    flips the ceil/floor decisions that torchvision's kernels take on such quotients. A
    denominator that is not a compile-time constant keeps the true division.
    """
    return numerator / (numerator * 0 + denominator)


def _sample_axis(start, length, num_bins: int, grid, grid_cap: int, size):
    """Bilinear sample positions and weights along one axis, torchvision's RoIAlign rules.

    Args:
      start, length: float32 [K], RoI start and extent in feature pixels (offset applied).
      num_bins: output bins along this axis.
      grid: int32 [K], samples per bin of each RoI (each <= grid_cap).
      grid_cap: static number of sample slots per bin.
      size: feature-map length along this axis, an int or int [K] (multilevel).
    Returns:
      low: int32 [K, num_bins, grid_cap], index of the lower neighbour (the upper one is low+1,
        which is the zero padding row/column when the sample is clamped to the last pixel).
      weights: float32 [K, num_bins, grid_cap, 2], weights of (low, low + 1); 0 for samples
        outside [-1, size] (torchvision's "empty" samples) or beyond the RoI's adaptive grid.
    """
    size = jnp.asarray(size)
    size_f = size.astype(jnp.float32).reshape(size.shape + (1, 1))
    bin_size = (length / num_bins)[:, None, None]
    grid_f = jnp.asarray(grid, jnp.float32).reshape(jnp.shape(grid) + (1, 1))
    slot = jnp.arange(grid_cap, dtype=jnp.float32)
    coord = (
        start[:, None, None]
        + jnp.arange(num_bins, dtype=jnp.float32)[:, None] * bin_size
        + (slot + 0.5) * bin_size / grid_f
    )
    # Written as "inside" so that NaN coordinates count as empty, like torchvision's kernel.
    valid = (coord >= -1.0) & (coord <= size_f) & (slot < grid_f)
    coord = jnp.where(valid, jnp.maximum(coord, 0.0), 0.0)
    low = jnp.minimum(jnp.floor(coord), size_f - 1)
    frac = jnp.where(low >= size_f - 1, 0.0, coord - low)
    weights = jnp.stack([jnp.where(valid, 1.0 - frac, 0.0), jnp.where(valid, frac, 0.0)], -1)
    return low.astype(jnp.int32), weights


def _roi_geometry(boxes, spatial_scale, output_size, sampling_ratio, max_sampling_ratio, aligned):
    """Per axis: RoI start and extent in feature pixels, the samples per bin (int32 [K]: the
    fixed or adaptive grid, 0 for non-finite RoIs) and its static cap."""
    oh, ow = output_size
    offset = 0.5 if aligned else 0.0
    scaled = boxes.astype(jnp.float32) * spatial_scale - offset
    x1, y1, x2, y2 = (scaled[:, i] for i in range(4))
    # A non-finite corner reads nothing (torchvision's result is arbitrary there, e.g. a
    # (0, 0, 0, -inf) box becomes 1x1 in the non-aligned mode): zero grid, so 0 output.
    finite = jnp.all(jnp.isfinite(scaled), axis=1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision forces malformed RoIs to 1x1 in the legacy mode only
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    if sampling_ratio > 0:
        grid = jnp.where(finite, sampling_ratio, 0)
        return (y1, roi_h, grid, sampling_ratio), (x1, roi_w, grid, sampling_ratio)
    if max_sampling_ratio is None or max_sampling_ratio < 1:
        raise ValueError(
            "sampling_ratio <= 0 (adaptive, ceil(roi_size / output_size) samples per bin) is data "
            "dependent: pass a static max_sampling_ratio >= 1 to cap it, got "
            f"max_sampling_ratio={max_sampling_ratio!r}"
        )

    def adaptive(extent, bins):
        per_bin = jnp.ceil(_ieee_divide(extent, float(bins)))
        per_bin = jnp.where(finite, per_bin, 0.0)
        return jnp.clip(per_bin, 0, max_sampling_ratio).astype(jnp.int32)

    return ((y1, roi_h, adaptive(roi_h, oh), max_sampling_ratio), (x1, roi_w, adaptive(roi_w, ow), max_sampling_ratio))


def _inverse_count(grid_y, grid_x, num_rois: int) -> jax.Array:
    """float32 [K], 1 / max(grid_h * grid_w, 1): RoIAlign averages its samples."""
    count = jnp.maximum(jnp.asarray(grid_y) * jnp.asarray(grid_x), 1).astype(jnp.float32)
    return jnp.broadcast_to(1.0 / count, (num_rois,))


def _gather_bilinear(flat, base, row_stride, y_low, wy, x_low, wx, inv_count):
    """Sum of the weighted 2x2 neighbourhoods of every sample point of every bin.

    flat: [N, C] zero-padded map rows; base: int32 [K] flat index of pixel (0, 0) of the RoI's
    image; row_stride: int or int32 [K], padded row length. Returns [K, oh, ow, C].
    """
    grid_y, grid_x = y_low.shape[-1], x_low.shape[-1]
    row_stride = jnp.asarray(row_stride).reshape(jnp.shape(row_stride) + (1, 1, 1))
    top_left = (base[:, None, None, None] + y_low[:, :, None, :] * row_stride)[..., None] + x_low[
        :, None, :, None, :
    ]  # [K, oh, ow, gy, gx]
    weights = (
        wy[:, :, None, :, None, :, None]
        * wx[:, None, :, None, :, None, :]
        * inv_count[:, None, None, None, None, None, None]
    )  # [K, oh, ow, gy, gx, 2, 2]
    row_stride = row_stride[..., 0]

    def sample_row(acc, iy):
        # One fused loop of gathers: XLA keeps it a single elementwise kernel over [K, oh, ow, C].
        idx = lax.dynamic_index_in_dim(top_left, iy, axis=3, keepdims=False)
        w = lax.dynamic_index_in_dim(weights, iy, axis=3, keepdims=False)
        for ix in range(grid_x):
            for dy in range(2):
                for dx in range(2):
                    rows = idx[..., ix] + dy * row_stride + dx
                    picked = flat.at[rows].get(mode="promise_in_bounds")
                    acc = acc + w[..., ix, dy, dx, None] * picked
        return acc

    acc = jnp.zeros(top_left.shape[:3] + flat.shape[-1:], flat.dtype)
    if grid_y * grid_x * 4 <= _MAX_UNROLLED_GATHERS:
        for iy in range(grid_y):
            acc = sample_row(acc, iy)
        return acc
    return lax.fori_loop(0, grid_y, lambda iy, acc: sample_row(acc, iy), acc)


def _separable_bilinear(padded, box_indices, y_low, wy, x_low, wx, inv_count):
    """RoIAlign as interpolation along y (whole padded rows) then along x.

    Cheaper than `_gather_bilinear` when a bin holds many samples (adaptive grids): cost
    K*oh*grid_y*2*(W+1) + K*oh*ow*grid_x*2 per channel instead of K*oh*ow*grid_y*grid_x*4.
    """
    batch, hp, wp, channels = padded.shape
    rows = padded.reshape(batch * hp, wp, channels)
    row_index = box_indices[:, None, None] * hp + y_low  # [K, oh, gy]

    def add_rows(acc, iy):
        idx = lax.dynamic_index_in_dim(row_index, iy, axis=2, keepdims=False)
        w = lax.dynamic_index_in_dim(wy, iy, axis=2, keepdims=False)
        for dy in range(2):
            acc = acc + w[..., dy, None, None] * rows.at[idx + dy].get(mode="promise_in_bounds")
        return acc

    acc = jnp.zeros(y_low.shape[:2] + (wp, channels), padded.dtype)  # [K, oh, W+1, C]
    if y_low.shape[-1] * 2 <= _MAX_UNROLLED_GATHERS:
        for iy in range(y_low.shape[-1]):
            acc = add_rows(acc, iy)
    else:
        acc = lax.fori_loop(0, y_low.shape[-1], lambda iy, a: add_rows(a, iy), acc)
    out = jnp.zeros(acc.shape[:2] + (x_low.shape[1], channels), padded.dtype)
    for ix in range(x_low.shape[-1]):
        for dx in range(2):
            cols = (x_low[:, :, ix] + dx)[:, None, :, None]
            picked = jnp.take_along_axis(acc, cols, axis=2, mode="promise_in_bounds")
            out = out + wx[:, None, :, ix, dx, None] * picked
    return out * inv_count[:, None, None, None]


def roi_align(
    features: jax.Array,
    boxes: jax.Array,
    box_indices: jax.Array,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
    max_sampling_ratio: int | None = None,
    channels: int | None = None,
) -> jax.Array:
    """RoIAlign with torchvision's semantics (torchvision.ops.roi_align / its CPU kernel).

    Each output bin averages grid_h x grid_w bilinear samples at
    start + (bin + (i + 0.5) / grid) * bin_size, where start = x1 * spatial_scale - 0.5 when
    `aligned` (pixel centres at half-integers) and x1 * spatial_scale when not; in the legacy
    non-aligned mode RoI extents are clamped to >= 1. A sample with y < -1, y > H, x < -1 or
    x > W contributes 0; otherwise coordinates <= 0 are clamped to 0 and the last pixel is
    repeated beyond H - 1 / W - 1. Boxes are used as given, like torchvision: a zero-size box
    samples a single point and an inverted one (aligned=True) samples backwards from (x1, y1);
    with adaptive sampling both get no samples and give 0. A box with a non-finite coordinate
    gives 0 (torchvision's result there is arbitrary).

    Args:
      features: float [B, H, W, C].
      boxes: float [K, 4], (x1, y1, x2, y2) in input pixels.
      box_indices: int [K] in [0, B) (clipped into that range: it cannot be checked under jit).
      output_size: (oh, ow) or int.
      spatial_scale: feature pixels per input pixel (1 / stride).
      sampling_ratio: samples per bin along each axis if > 0. If <= 0, torchvision's adaptive
        ceil(roi_extent / output_extent) per RoI, which is data dependent: it then needs a
        static `max_sampling_ratio`; per-RoI grids above the cap are clipped to it (so the result
        equals torchvision's exactly when ceil(roi_extent / output_extent) <= max_sampling_ratio,
        e.g. for every RoI inside the map when the cap is ceil(max(H, W) / min(oh, ow))).
      aligned: torchvision's `aligned` flag (detectron2's ROIAlignV2 when True).
      max_sampling_ratio: static cap for adaptive sampling; ignored when sampling_ratio > 0.
      channels: optional C that `features` must have in its last axis, to catch NCHW maps.
    Returns:
      float [K, oh, ow, C], dtype of `features`.
    Raises:
      ValueError: on bad shapes (features not NHWC with `channels`), output_size, or adaptive
        sampling without a cap.
      TypeError: a static argument is traced.

    Static under jit: `output_size`, `sampling_ratio`, `aligned`, `max_sampling_ratio`, `channels`.
    E.g. `jax.jit(roi_align, static_argnames=("output_size", "sampling_ratio", "aligned"))`;
    traced, they are refused with a TypeError naming them.

    Float32 note: sample coordinates are rounded to float32 as in torchvision's kernel, so
    results agree with a float64 evaluation to about ulp(coordinate) x the feature's variation
    per pixel.
    """
    _require_static("roi_align", output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned,
                    max_sampling_ratio=max_sampling_ratio, channels=channels)
    features, boxes, box_indices = (jnp.asarray(a) for a in (features, boxes, box_indices))
    _check_layout(features, channels)
    _check_rois(features, boxes, box_indices)
    output_size = _pair(output_size, "output_size")
    batch, height, width, channels = features.shape
    (y1, roi_h, grid_y, cap_y), (x1, roi_w, grid_x, cap_x) = _roi_geometry(
        boxes, spatial_scale, output_size, sampling_ratio, max_sampling_ratio, aligned
    )
    y_low, wy = _sample_axis(y1, roi_h, output_size[0], grid_y, cap_y, height)
    x_low, wx = _sample_axis(x1, roi_w, output_size[1], grid_x, cap_x, width)
    inv_count = _inverse_count(grid_y, grid_x, boxes.shape[0])
    dtype = features.dtype
    box_indices = jnp.clip(box_indices, 0, batch - 1).astype(jnp.int32)
    # A zero row and column after the map: the "upper" neighbour of a sample clamped to the last
    # pixel reads zeros there with weight 0, so every sample is a plain 2x2 gather.
    padded = jnp.pad(features, ((0, 0), (0, 1), (0, 1), (0, 0)))
    oh, ow = output_size
    direct_cost = oh * ow * cap_y * cap_x * 4
    separable_cost = oh * cap_y * 2 * (width + 1) + oh * ow * cap_x * 2
    if separable_cost < direct_cost:
        out = _separable_bilinear(
            padded, box_indices, y_low, wy.astype(dtype), x_low, wx.astype(dtype), inv_count.astype(dtype)
        )
    else:
        flat = padded.reshape(-1, channels)
        base = box_indices * ((height + 1) * (width + 1))
        out = _gather_bilinear(
            flat, base, width + 1, y_low, wy.astype(dtype), x_low, wx.astype(dtype), inv_count.astype(dtype)
        )
    return out.astype(dtype)


def assign_fpn_levels(
    boxes: jax.Array, min_level: int = 2, max_level: int = 5, canonical_size: float = 224.0, canonical_level: int = 4
) -> jax.Array:
    """FPN level of each RoI (Feature Pyramid Networks, eq. 1; torchvision's LevelMapper).

    level = floor(canonical_level + log2(sqrt(area) / canonical_size + 1e-6)), clamped to
    [min_level, max_level]. Degenerate boxes (zero, negative or NaN area) get min_level.

    Args:
      boxes: float [K, 4], (x1, y1, x2, y2) in input pixels.
    Returns:
      int32 [K], absolute pyramid levels (a level-l map has stride 2**l).

    Static under jit: `min_level`, `max_level`.
    """
    boxes = jnp.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [K, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    if min_level > max_level:
        raise ValueError(f"min_level={min_level} must be <= max_level={max_level}")
    boxes = boxes.astype(jnp.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = jnp.where(area > 0, area, 0.0)  # also maps NaN to 0; torchvision would take sqrt(<0)
    level = jnp.floor(canonical_level + jnp.log2(jnp.sqrt(area) / canonical_size + 1e-6))
    return jnp.clip(level, min_level, max_level).astype(jnp.int32)


def _pyramid_level(key) -> int:
    """Level number of a pyramid key: 3, or a name ending in it such as "P3"."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    digits = str(key)[len(str(key).rstrip("0123456789")) :]
    if not digits:
        raise ValueError(f"feature pyramid key {key!r} is not a level number or a name ending in one (e.g. 3 or 'P3')")
    return int(digits)


def multilevel_roi_align(
    features: Mapping[int, jax.Array] | Sequence[jax.Array],
    boxes: jax.Array,
    box_indices: jax.Array,
    levels: jax.Array,
    output_size: int | tuple[int, int],
    sampling_ratio: int = 2,
    aligned: bool = True,
    spatial_scales: Sequence[float] | None = None,
    channels: int | None = None,
) -> jax.Array:
    """RoIAlign over a feature pyramid, each RoI read from its own level only.

    All levels are zero-padded by one row and column, flattened and concatenated into a single
    [sum_l B*(H_l+1)*(W_l+1), C] buffer; small per-level tables (buffer offset, H, W, scale) are
    gathered with each RoI's level, and one pass of RoIAlign's 2x2 gathers runs with those
    per-RoI parameters. The work is that of a single-level RoIAlign over K RoIs (plus one copy
    of the pyramid), not K RoIs times the number of levels.

    Args:
      features: {level: float [B, H_l, W_l, C]} with stride 2**level (scale 2**-level); keys
        are level numbers or names ending in one ("P2".."P5"). Or a sequence of maps with
        `spatial_scales` (then `levels` index the sequence).
      boxes: float [K, 4], (x1, y1, x2, y2) in input pixels.
      box_indices: int [K] in [0, B) (clipped).
      levels: int [K], a key of `features` per RoI (e.g. from `assign_fpn_levels`); values
        below/above the keys are clamped to the lowest/highest, a value between two keys (a
        gap in the keys) reads the next higher one.
      output_size, sampling_ratio (> 0), aligned: as in `roi_align`.
      spatial_scales: per-map scales; required for a sequence, optional override for a dict.
      channels: optional C that every level must have in its last axis, to catch NCHW maps.
    Returns:
      float [K, oh, ow, C].

    Static under jit: `output_size`, `sampling_ratio`, `aligned`, `channels` (and the keys of
    `features`, which are static by nature); traced, they are refused with a TypeError naming them.
    """
    _require_static("multilevel_roi_align", output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned,
                    channels=channels)
    if isinstance(features, Mapping):
        by_level = {_pyramid_level(key): fmap for key, fmap in features.items()}
        keys = sorted(by_level)
        maps = [by_level[k] for k in keys]
        scales = [2.0**-k for k in keys] if spatial_scales is None else list(spatial_scales)
    else:
        keys = list(range(len(features)))
        maps = list(features)
        if spatial_scales is None:
            raise ValueError("a sequence of feature maps needs spatial_scales (one per map)")
        scales = list(spatial_scales)
    if not maps or len(scales) != len(maps):
        raise ValueError(
            f"need >= 1 feature map and one scale per map, got {len(maps)} maps and {len(scales)} spatial_scales"
        )
    maps = [jnp.asarray(m) for m in maps]
    boxes, box_indices, levels = jnp.asarray(boxes), jnp.asarray(box_indices), jnp.asarray(levels)
    for key, fmap in zip(keys, maps):
        _check_layout(fmap, channels, f"level {key}")
        _check_rois(fmap, boxes, box_indices)
        if fmap.shape[0] != maps[0].shape[0] or fmap.shape[3] != maps[0].shape[3]:
            raise ValueError(
                f"level {key}: shape {fmap.shape} differs from {maps[0].shape} in batch or channels (the last "
                "axis: maps must be NHWC [B, H, W, C])"
            )
    if levels.shape != boxes.shape[:1]:
        raise ValueError(f"levels must be [K]={boxes.shape[:1]}, got shape {levels.shape}")
    if sampling_ratio <= 0:
        raise ValueError(f"multilevel_roi_align needs sampling_ratio > 0, got {sampling_ratio}")
    output_size = _pair(output_size, "output_size")
    batch, channels, dtype = maps[0].shape[0], maps[0].shape[3], maps[0].dtype

    heights = np.array([m.shape[1] for m in maps], np.int32)
    widths = np.array([m.shape[2] for m in maps], np.int32)
    sizes = batch * (heights + 1) * (widths + 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    flat = jnp.concatenate([jnp.pad(m, ((0, 0), (0, 1), (0, 1), (0, 0))).reshape(-1, channels) for m in maps], axis=0)
    # Level key -> slot in the tables (keys may be sparse, e.g. {2, 3, 4, 5}).
    slot_of_key = np.searchsorted(np.array(keys), np.arange(keys[0], keys[-1] + 1))
    slot = jnp.asarray(slot_of_key, jnp.int32)[jnp.clip(levels, keys[0], keys[-1]) - keys[0]]
    height, width = jnp.asarray(heights)[slot], jnp.asarray(widths)[slot]
    scale = jnp.asarray(scales, jnp.float32)[slot]

    (y1, roi_h, grid_y, cap), (x1, roi_w, grid_x, _) = _roi_geometry(
        boxes * scale[:, None], 1.0, output_size, sampling_ratio, None, aligned
    )
    y_low, wy = _sample_axis(y1, roi_h, output_size[0], grid_y, cap, height)
    x_low, wx = _sample_axis(x1, roi_w, output_size[1], grid_x, cap, width)
    box_indices = jnp.clip(box_indices, 0, batch - 1).astype(jnp.int32)
    base = jnp.asarray(offsets)[slot] + box_indices * (height + 1) * (width + 1)
    inv_count = _inverse_count(grid_y, grid_x, boxes.shape[0])
    out = _gather_bilinear(
        flat, base, width + 1, y_low, wy.astype(dtype), x_low, wx.astype(dtype), inv_count.astype(dtype)
    )
    return out.astype(dtype)


def _round_half_away(x: jax.Array) -> jax.Array:
    """C's round(): halves go away from zero (jnp.round rounds them to even)."""
    truncated = jnp.trunc(x)
    return jnp.where(jnp.abs(x - truncated) >= 0.5, truncated + jnp.sign(x), truncated)


def _first_argmax(a, b):
    """Combine two (value, flat index) candidates: the larger value, ties to the smaller index."""
    take_b = (b[0] > a[0]) | ((b[0] == a[0]) & (b[1] < a[1]))
    return jnp.where(take_b, b[0], a[0]), jnp.where(take_b, b[1], a[1])


def _doubling_tables(values, indices, axis: int, num_levels: int):
    """Argmax over windows of 2**0 .. 2**(num_levels-1) positions along `axis`.

    Returns (values, indices) stacked on a new leading axis of size num_levels. Level i+1
    combines the windows at p and p + 2**i of level i (a size-2 reduce_window dilated by 2**i;
    beyond the edge a (-inf, int max) sentinel never wins). As reduce_windows, XLA materialises
    each level once; written as slices, it fused and recomputed them exponentially often.
    """
    levels = [(values, indices)]
    ones = [1] * values.ndim
    for i in range(num_levels - 1):
        window, dilation, padding = list(ones), list(ones), [(0, 0)] * values.ndim
        window[axis], dilation[axis], padding[axis] = 2, 2**i, (0, 2**i)
        levels.append(
            lax.reduce_window(
                levels[-1],
                (jnp.array(-jnp.inf, values.dtype), jnp.array(2**31 - 1, jnp.int32)),
                _first_argmax,
                window,
                ones,
                padding,
                window_dilation=dilation,
            )
        )
    return jnp.stack([v for v, _ in levels]), jnp.stack([i for _, i in levels])


def _window_argmax_tables(features: jax.Array) -> jax.Array:
    """Sparse tables of first-argmax indices over power-of-two windows.

    Returns int32 [LW+1, LH+1, B, H, W, C] where entry [j, i, b, h, w, c] is the flat index
    (y * W + x) of the largest value of channel c in rows [h, h + 2**i) x columns
    [w, w + 2**j) (cut at the map's edge); ties go to the smallest index, i.e. the first one in
    row-major scan order as in torchvision's kernel. Any window is the union of 4 such windows,
    which answers each RoIPool bin with 4 lookups whatever its size.
    """
    _, height, width, _ = features.shape
    pos = jnp.arange(height * width, dtype=jnp.int32).reshape(1, height, width, 1)
    by_rows = _doubling_tables(
        features, jnp.broadcast_to(pos, features.shape), 1, height.bit_length()
    )  # [LH+1, B, H, W, C]
    return _doubling_tables(*by_rows, 3, width.bit_length())[1]


def roi_pool(
    features: jax.Array,
    boxes: jax.Array,
    box_indices: jax.Array,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    channels: int | None = None,
) -> jax.Array:
    """RoIPool (Fast R-CNN) with torchvision's semantics (torchvision.ops.roi_pool).

    Box corners are scaled and rounded half away from zero (C round()); the RoI spans
    max(x2 - x1 + 1, 1) x max(y2 - y1 + 1, 1) pixels; bin (i, j) covers rows
    [floor(i * bin_h), ceil((i + 1) * bin_h)) + y1 (and columns likewise) in float32 arithmetic,
    clipped to the map; its output is the channel-wise max, or 0 for an empty bin. Ties go to the
    first pixel in row-major order. The gradient w.r.t. `features` goes to that argmax only
    (nothing for empty bins). Boxes with non-finite coordinates give zeros.

    Bins of any size are answered with 4 lookups into sparse tables of window argmaxes, which
    take (floor(log2 H) + 1) * (floor(log2 W) + 1) int32 copies of the feature map.

    Args:
      features: float [B, H, W, C]. boxes: float [K, 4] (x1, y1, x2, y2) in input pixels.
      box_indices: int [K] in [0, B) (clipped). output_size: (oh, ow) or int.
      spatial_scale: feature pixels per input pixel (1 / stride).
      channels: optional C that `features` must have in its last axis, to catch NCHW maps.
    Returns:
      float [K, oh, ow, C].

    Static under jit: `output_size`, `channels`; traced, they are refused with a TypeError naming
    them.
    """
    _require_static("roi_pool", output_size=output_size, channels=channels)
    features, boxes, box_indices = (jnp.asarray(a) for a in (features, boxes, box_indices))
    _check_layout(features, channels)
    _check_rois(features, boxes, box_indices)
    oh, ow = _pair(output_size, "output_size")
    batch, height, width, channels = features.shape
    scaled = boxes.astype(jnp.float32) * spatial_scale
    finite = jnp.all(jnp.isfinite(scaled), axis=1)
    # Clamp far-away corners so int32 arithmetic cannot overflow; they stay outside the map.
    corners = jnp.clip(jnp.where(finite[:, None], scaled, 0.0), -(2.0**24), 2.0**24)
    corners = _round_half_away(corners)
    x1, y1, x2, y2 = (corners[:, i].astype(jnp.int32) for i in range(4))
    box_indices = jnp.clip(box_indices, 0, batch - 1).astype(jnp.int32)

    def bins(start, end, num_bins, size):
        extent = jnp.maximum(end - start + 1, 1).astype(jnp.float32)
        bin_size = _ieee_divide(extent, float(num_bins))[:, None]
        index = jnp.arange(num_bins, dtype=jnp.float32)
        lo = jnp.floor(index * bin_size).astype(jnp.int32) + start[:, None]
        hi = jnp.ceil((index + 1) * bin_size).astype(jnp.int32) + start[:, None]
        return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)

    h_lo, h_hi = bins(y1, y2, oh, height)  # [K, oh]
    w_lo, w_hi = bins(x1, x2, ow, width)  # [K, ow]
    empty = ((h_hi <= h_lo)[:, :, None] | (w_hi <= w_lo)[:, None, :]) | ~finite[:, None, None]

    def log2_floor(extent, limit):  # largest i with 2**i <= extent (0 for empty bins)
        # Start from an array: a map 1 pixel high (or wide) has no level above 0.
        zero = jnp.zeros(extent.shape, jnp.int32)
        return sum(((extent >= 2**i).astype(jnp.int32) for i in range(1, limit.bit_length())), zero)

    level_h, level_w = log2_floor(h_hi - h_lo, height), log2_floor(w_hi - w_lo, width)
    rows = [h_lo, jnp.maximum(h_hi - 2**level_h, 0)]
    cols = [w_lo, jnp.maximum(w_hi - 2**level_w, 0)]
    tables = _window_argmax_tables(lax.stop_gradient(features))
    num_row_levels = tables.shape[1]
    tables = tables.reshape(-1, channels)
    table_base = ((level_w[:, None, :] * num_row_levels + level_h[:, :, None]) * batch + box_indices[:, None, None]) * (
        height * width
    )
    flat = features.reshape(-1)
    image_base = box_indices[:, None, None, None] * (height * width * channels)
    channel = jnp.arange(channels, dtype=jnp.int32)
    cells = jnp.stack(
        [
            jnp.minimum(r[:, :, None], height - 1) * width + jnp.minimum(c[:, None, :], width - 1)
            for r in rows
            for c in cols
        ],
        -1,
    )
    candidates = tables.at[table_base[..., None] + cells].get(mode="promise_in_bounds")
    values = (
        lax.stop_gradient(flat)
        .at[image_base[..., None] + candidates * channels + channel]
        .get(mode="promise_in_bounds")
    )
    best = jnp.max(values, axis=3, keepdims=True)  # [K, oh, ow, 1, C]
    first = jnp.min(jnp.where(values == best, candidates, height * width - 1), axis=3)
    # Read the winner from `features` itself: the gradient reaches that one pixel only.
    best_val = flat.at[image_base + first * channels + channel].get(mode="promise_in_bounds")
    return jnp.where(empty[..., None], jnp.zeros((), features.dtype), best_val)

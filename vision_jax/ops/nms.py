"""Greedy non-maximum suppression with a fixed-size output, tiled so memory stays O(N * tile).

Semantics (torchvision's ``nms``, TF's ``non_max_suppression``):
  1. Candidates are the boxes with score > score_threshold; NaN scores and -inf scores are never
     candidates (a NaN compares false).
  2. Candidates are visited by descending score; equal scores are visited lower index first.
  3. A visited box is kept unless its IoU with an already kept box is > iou_threshold (strict),
     in which case it is suppressed. ``batched_nms`` only lets boxes of the same class suppress
     each other.
  4. It stops after ``max_output_size`` kept boxes.
IoU follows ``vision_jax.ops.boxes``: x2 - x1 widths, an empty or inverted box has area 0 and
IoU 0 with everything, so (for iou_threshold >= 0) it is never suppressed and suppresses
nothing. NaN coordinates give IoU 0 as well. The IoU test is
``intersection > iou_threshold * union`` (no division); it can differ from a float64
``iou > threshold`` only for an IoU within float32 rounding of the threshold.

Algorithm (after TF Model Garden's padded NMS, made exact and early-exiting): visit the
candidates in score order, one tile of ``tile_size`` boxes at a time. A tile's boxes are first
tested against the boxes kept so far (blocks of [tile, tile] IoUs, only over the filled part of
the output buffer, stopping once the whole tile is suppressed), then against each other:
keep = alive & ~any(kept earlier in the tile and overlapping) iterated to its fixed point, which
is exactly the greedy answer. The loop stops as soon as ``max_output_size`` boxes are kept or
the candidates run out. Only the top candidates are ordered (``lax.top_k`` of a prefix that grows 4x when the loop runs past it), because a full
sort of 20k scores costs more on CPU than the suppression itself.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# 64 measured fastest on CPU (benchmark_ops.py): larger tiles pay for more self-suppression
# rounds on bigger [tile, tile] blocks, smaller ones for more loop iterations.
DEFAULT_TILE_SIZE = 64
# The first ordered prefix holds this many tiles (or max_output_size boxes, if larger); each
# further prefix is 4x longer.
_FIRST_PREFIX_TILES = 8


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _suppression_mask(tile, other, iou_threshold):
    """[T, 4+1] tile x [S, 4+1] other boxes (x1, y1, x2, y2, class) -> [S, T] bool IoU > thr."""
    tx1, ty1, tx2, ty2, tcls = (tile[:, k][None, :] for k in range(5))
    ox1, oy1, ox2, oy2, ocls = (other[:, k][:, None] for k in range(5))
    inter_w = jnp.maximum(jnp.minimum(tx2, ox2) - jnp.maximum(tx1, ox1), 0.0)
    inter_h = jnp.maximum(jnp.minimum(ty2, oy2) - jnp.maximum(ty1, oy1), 0.0)
    intersection = inter_w * inter_h
    tile_area = jnp.maximum(tx2 - tx1, 0.0) * jnp.maximum(ty2 - ty1, 0.0)
    other_area = jnp.maximum(ox2 - ox1, 0.0) * jnp.maximum(oy2 - oy1, 0.0)
    union = tile_area + other_area - intersection
    return (intersection > iou_threshold * union) & (union > 0) & (tcls == ocls)


def _tile_loop(sorted_boxes, num_candidates, iou_threshold, max_output_size, tile_size, state):
    """Runs the tiled greedy NMS over the ordered prefix ``sorted_boxes`` [P, 5] from ``state``.

    state = (next_tile, num_kept, kept_boxes [K_pad, 5], kept_positions [K_pad] into the prefix).
    """
    prefix_len = sorted_boxes.shape[0]
    num_tiles = prefix_len // tile_size
    kept_capacity = state[2].shape[0]
    in_tile = jnp.arange(tile_size, dtype=jnp.int32)
    earlier_in_tile = in_tile[:, None] < in_tile[None, :]  # [j, i]: j visited before i

    def not_done(state):
        next_tile, num_kept, _, _ = state
        return ((next_tile < num_tiles) & (num_kept < max_output_size)
                & (next_tile * tile_size < num_candidates))

    def process_tile(state):
        next_tile, num_kept, kept_boxes, kept_positions = state
        start = next_tile * tile_size
        tile = lax.dynamic_slice_in_dim(sorted_boxes, start, tile_size)
        alive = start + in_tile < num_candidates

        # Suppression by boxes kept in earlier tiles, one [tile, tile] block of them at a time.
        def cross_block(carry):
            block, alive = carry
            kept_block = lax.dynamic_slice_in_dim(kept_boxes, block * tile_size, tile_size)
            block_valid = block * tile_size + in_tile < num_kept
            hits = _suppression_mask(tile, kept_block, iou_threshold) & block_valid[:, None]
            return block + 1, alive & ~jnp.any(hits, axis=0)

        num_blocks = (num_kept + tile_size - 1) // tile_size
        _, alive = lax.while_loop(lambda c: (c[0] < num_blocks) & jnp.any(c[1]), cross_block,
                                  (jnp.int32(0), alive))

        # Suppression inside the tile: the fixed point of keep = alive & ~any(earlier kept
        # overlapping) is the greedy answer; it takes (longest suppression chain + 1) rounds.
        overlaps = _suppression_mask(tile, tile, iou_threshold) & earlier_in_tile

        def self_round(carry):
            keep, _ = carry
            new_keep = alive & ~jnp.any(overlaps & keep[:, None], axis=0)
            return new_keep, jnp.any(new_keep != keep)

        keep, _ = lax.while_loop(lambda c: c[1], self_round, (alive, jnp.bool_(True)))

        # Append the kept boxes in visiting order; past max_output_size they are dropped.
        slot = num_kept + jnp.cumsum(keep, dtype=jnp.int32) - 1
        slot = jnp.where(keep & (slot < max_output_size), slot, kept_capacity)
        kept_boxes = kept_boxes.at[slot].set(tile, mode="drop")
        kept_positions = kept_positions.at[slot].set(start + in_tile, mode="drop")
        num_kept = jnp.minimum(num_kept + jnp.sum(keep, dtype=jnp.int32), max_output_size)
        return next_tile + 1, num_kept, kept_boxes, kept_positions

    return lax.while_loop(not_done, process_tile, state)


def _nms_padded(boxes, scores, classes, iou_threshold, score_threshold, max_output_size,
                tile_size):
    num_boxes = boxes.shape[0]
    dtype = jnp.promote_types(boxes.dtype, jnp.float32)
    boxes = boxes.astype(dtype)
    scores = scores.astype(dtype)
    # Non-candidates (NaN, <= threshold) sink below every candidate; -0.0 == 0.0 as in TF.
    is_candidate = scores > score_threshold
    ranking = jnp.where(is_candidate, jnp.where(scores == 0, 0.0, scores), -jnp.inf)
    num_candidates = jnp.sum(is_candidate, dtype=jnp.int32)
    packed = jnp.concatenate([boxes, classes.astype(dtype)[:, None]], axis=1)  # [N, 5]

    kept_capacity = _round_up(max(max_output_size, 1), tile_size)
    state = (jnp.int32(0), jnp.int32(0), jnp.zeros((kept_capacity, 5), dtype),
             jnp.zeros((kept_capacity,), jnp.int32))

    # Prefix lengths: the first covers max_output_size or a few tiles, then 4x each time. All
    # but the last (= num_boxes) are whole tiles, so a later phase resumes at a tile boundary.
    first = min(num_boxes, _round_up(max(_FIRST_PREFIX_TILES * tile_size, max_output_size),
                                     tile_size))
    prefix_lengths = [first]
    while prefix_lengths[-1] < num_boxes:
        prefix_lengths.append(min(num_boxes, prefix_lengths[-1] * 4))

    orders = []
    for phase, prefix_len in enumerate(prefix_lengths):
        def run_phase(state, prefix_len=prefix_len):
            _, order = lax.top_k(ranking, prefix_len)  # ties: lower index first
            padded_len = _round_up(prefix_len, tile_size)
            sorted_boxes = jnp.pad(packed[order], ((0, padded_len - prefix_len), (0, 0)))
            state = _tile_loop(sorted_boxes, jnp.minimum(num_candidates, prefix_len),
                               iou_threshold, max_output_size, tile_size, state)
            return state, jnp.pad(order, (0, num_boxes - prefix_len))

        if phase == 0:
            state, order = run_phase(state)
        else:
            needs_more = ((state[1] < max_output_size)
                          & (num_candidates > prefix_lengths[phase - 1]))
            state, order = lax.cond(needs_more, run_phase,
                                    lambda s: (s, jnp.zeros((num_boxes,), jnp.int32)), state)
            # The last phase that ran holds the longest (consistent) ordering.
            order = jnp.where(needs_more, order, orders[-1])
        orders.append(order)
    _, num_kept, _, kept_positions = state
    valid = jnp.arange(max_output_size) < num_kept
    indices = jnp.where(valid, orders[-1][kept_positions[:max_output_size]], -1)
    return indices.astype(jnp.int32), num_kept


def _check_inputs(boxes, scores, max_output_size, tile_size):
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4]; got shape {boxes.shape}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be [N]={boxes.shape[0]}; got shape {scores.shape}")
    if not isinstance(max_output_size, int) or max_output_size < 0:
        raise ValueError(f"max_output_size must be a static int >= 0; got {max_output_size!r}")
    if not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be a static int >= 1; got {tile_size!r}")


@functools.partial(jax.jit, static_argnames=("max_output_size", "tile_size"))
def _nms_jit(boxes, scores, classes, iou_threshold, score_threshold, max_output_size, tile_size):
    if boxes.shape[0] == 0 or max_output_size == 0:
        return jnp.full((max_output_size,), -1, jnp.int32), jnp.int32(0)
    return _nms_padded(boxes, scores, classes, iou_threshold, score_threshold, max_output_size,
                       tile_size)


def nms(boxes: jnp.ndarray, scores: jnp.ndarray, iou_threshold: float, max_output_size: int,
        score_threshold: float = float("-inf"), tile_size: int = DEFAULT_TILE_SIZE):
    """Greedy NMS (see the module docstring for the exact rule).

    Static under jit: `max_output_size`, `tile_size`.

    Args:
      boxes: [N, 4] float xyxy. scores: [N] float.
      iou_threshold: suppress when IoU > this (may be traced). score_threshold: candidates have
        score > this (may be traced).
      max_output_size: static int, the output length.
      tile_size: static, boxes per tile; memory is O(N + tile_size^2 + max_output_size).

    Returns:
      indices: [max_output_size] int32 into boxes, by descending score, padded with -1.
      num_valid: int32 scalar, the number of real indices.
    """
    boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
    _check_inputs(boxes, scores, max_output_size, tile_size)
    classes = jnp.zeros(scores.shape, jnp.int32)
    return _nms_jit(boxes, scores, classes, iou_threshold, score_threshold,
                    max_output_size=max_output_size, tile_size=tile_size)


def batched_nms(boxes: jnp.ndarray, scores: jnp.ndarray, classes: jnp.ndarray,
                iou_threshold: float, max_output_size: int,
                score_threshold: float = float("-inf"), tile_size: int = DEFAULT_TILE_SIZE):
    """Class-aware NMS: ``nms`` where only boxes with equal ``classes`` [N] int suppress each other.

    Equivalent to running ``nms`` per class and merging by score (torchvision's
    ``batched_nms``), but exact: classes are compared directly instead of offsetting the boxes,
    which would round coordinates in float32. Class ids travel as float32 beside the boxes, so
    they must be integers of magnitude < 2^24. Returns (indices [max_output_size] int32 padded
    with -1, num_valid int32), ordered by descending score across classes.

    Static under jit: `max_output_size`, `tile_size`.
    """
    boxes, scores, classes = jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes)
    _check_inputs(boxes, scores, max_output_size, tile_size)
    if classes.shape != scores.shape:
        raise ValueError(f"classes must be [N]={scores.shape[0]}; got shape {classes.shape}")
    return _nms_jit(boxes, scores, classes, iou_threshold, score_threshold,
                    max_output_size=max_output_size, tile_size=tile_size)

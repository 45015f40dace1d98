"""Float64 NumPy SSD pieces written from the paper (Liu et al., 2016) and the documented behaviour of
torchvision's SSD (DefaultBoxGenerator, SSDMatcher, compute_loss, postprocess_detections), not from
vision_jax's code. Plain Python loops over boxes, images and classes.

Class convention (the project's, detectron2's; torchvision puts background first): logits are
[..., C + 1] with background last, at index C; a label is k for class k and C for background.
"""

from __future__ import annotations

import math

import numpy as np


def default_boxes(feature_shapes, image_size, aspect_ratios, scales, steps=None) -> np.ndarray:
    """torchvision DefaultBoxGenerator (clip=True) as xyxy input pixels, [A, 4] float64."""
    image_h, image_w = image_size
    out = []
    for k, (grid_h, grid_w) in enumerate(feature_shapes):
        sizes = [(scales[k], scales[k]), (math.sqrt(scales[k] * scales[k + 1]),) * 2]
        for r in aspect_ratios[k]:
            sizes += [
                (scales[k] * math.sqrt(r), scales[k] / math.sqrt(r)),
                (scales[k] / math.sqrt(r), scales[k] * math.sqrt(r)),
            ]
        cells_y = image_h / steps[k] if steps else grid_h
        cells_x = image_w / steps[k] if steps else grid_w
        for i in range(grid_h):
            for j in range(grid_w):
                cx, cy = (j + 0.5) / cells_x, (i + 0.5) / cells_y
                for w, h in sizes:
                    w, h = min(max(w, 0.0), 1.0), min(max(h, 0.0), 1.0)
                    out.append(
                        [(cx - w / 2) * image_w, (cy - h / 2) * image_h, (cx + w / 2) * image_w, (cy + h / 2) * image_h]
                    )
    return np.asarray(out, np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0.0)
            ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0.0)
            inter = iw * ih
            union = max(p[2] - p[0], 0) * max(p[3] - p[1], 0) + max(q[2] - q[0], 0) * max(q[3] - q[1], 0) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def match(gt_boxes, gt_valid, gt_crowd, anchors, threshold=0.5):
    """The paper's matching: threshold pass, then each eligible gt forces its best default box;
    conflicts go to the gt with the higher IoU (lower index on ties). (matched [A], positive [A])."""
    num_anchors = len(anchors)
    matched, positive = np.zeros(num_anchors, np.int64), np.zeros(num_anchors, bool)
    eligible = [g for g in range(len(gt_boxes)) if gt_valid[g] and not gt_crowd[g]]
    if not eligible:
        return matched, positive
    overlaps = iou(np.asarray(gt_boxes)[eligible], anchors)
    for a in range(num_anchors):
        best = int(np.argmax(overlaps[:, a]))
        if overlaps[best, a] >= threshold:
            matched[a], positive[a] = eligible[best], True
    claims: dict[int, list[int]] = {}
    for row, g in enumerate(eligible):
        b = int(np.argmax(overlaps[row]))
        if overlaps[row, b] > 0:
            claims.setdefault(b, []).append(row)
    for b, rows in claims.items():
        winner = max(rows, key=lambda row: (overlaps[row, b], -row))
        matched[b], positive[b] = eligible[winner], True
    return matched, positive


def near_tie(overlaps: np.ndarray, threshold: float) -> bool:
    """Whether float32 rounding could flip an argmax that matching depends on: a gt's two best
    default boxes, or a default box's two best gts at or above the threshold, within 1e-5 IoU.
    Such ties are real (a small box inside two symmetric default boxes) and either answer is right."""

    def top_two_close(matrix):  # per column
        if matrix.shape[0] < 2 or matrix.shape[1] == 0:
            return np.zeros(matrix.shape[1], bool)
        top = np.sort(matrix, axis=0)[-2:]
        return (top[1] - top[0] < 1e-5) & (top[1] > 0)

    if len(overlaps) == 0:
        return False
    return bool(np.any(top_two_close(overlaps.T)) or np.any(top_two_close(overlaps) & (overlaps.max(0) >= threshold)))


def encode(gt: np.ndarray, anchors: np.ndarray, variances=(0.1, 0.1, 0.2, 0.2)) -> np.ndarray:
    """The paper's offsets: ((g_cx - d_cx) / d_w / v0, ..., log(g_w / d_w) / v2, ...)."""
    gt, anchors = np.asarray(gt, np.float64), np.asarray(anchors, np.float64)
    dw, dh = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    dx, dy = anchors[:, 0] + dw / 2, anchors[:, 1] + dh / 2
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + gw / 2, gt[:, 1] + gh / 2
    return np.stack(
        [
            (gx - dx) / dw / variances[0],
            (gy - dy) / dh / variances[1],
            np.log(gw / dw) / variances[2],
            np.log(gh / dh) / variances[3],
        ],
        -1,
    )


SCALE_CLAMP = math.log(1000 / 16)  # torchvision's BoxCoder bbox_xform_clip


def decode(deltas: np.ndarray, anchors: np.ndarray, variances=(0.1, 0.1, 0.2, 0.2), clamp=SCALE_CLAMP):
    deltas, anchors = np.asarray(deltas, np.float64), np.asarray(anchors, np.float64)
    dw, dh = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    dx, dy = anchors[:, 0] + dw / 2, anchors[:, 1] + dh / 2
    cx, cy = deltas[:, 0] * variances[0] * dw + dx, deltas[:, 1] * variances[1] * dh + dy
    w = np.exp(np.minimum(deltas[:, 2] * variances[2], clamp)) * dw
    h = np.exp(np.minimum(deltas[:, 3] * variances[3], clamp)) * dh
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def mine_negatives(background_loss, positive, ratio=3.0, min_negatives=0) -> np.ndarray:
    """Hard negative mining of one image: the top floor(ratio * #pos) negatives by loss."""
    negatives = [a for a in np.argsort(-np.asarray(background_loss, np.float64), kind="stable") if not positive[a]]
    count = min(len(negatives), max(math.floor(ratio * positive.sum()), min_negatives))
    mask = np.zeros(len(positive), bool)
    mask[negatives[:count]] = True
    return mask


def multibox_loss(logits, deltas, labels, targets, ratio=3.0):
    """(loss_cls, loss_box) over a batch, normalised by max(1, total positives). logits [B, A, C + 1]
    background last; labels [B, A] in 0..C (C = background)."""
    log_probs = log_softmax(logits)
    background = log_probs.shape[-1] - 1
    total_cls, total_box, num_pos = 0.0, 0.0, 0
    for b in range(len(labels)):
        positive = labels[b] != background
        negative = mine_negatives(-log_probs[b, :, background], positive, ratio)
        for a in np.nonzero(positive | negative)[0]:
            total_cls -= log_probs[b, a, labels[b, a]]
        for a in np.nonzero(positive)[0]:
            for d in np.abs(np.asarray(deltas[b, a], np.float64) - targets[b, a]):
                total_box += 0.5 * d * d if d < 1.0 else d - 0.5
        num_pos += int(positive.sum())
    n = max(1, num_pos)
    return total_cls / n, total_box / n


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(iou(boxes[i : i + 1], boxes[k : k + 1])[0, 0] <= threshold for k in keep):
            keep.append(i)
    return keep


def detect(logits, deltas, anchors, image_size, score_threshold, nms_threshold, topk, max_detections):
    """torchvision SSD.postprocess_detections for one image: (boxes, scores, classes) by score.
    logits [A, C + 1] background last; classes in 0..C-1."""
    probs = np.exp(log_softmax(logits))
    boxes = decode(deltas, anchors)
    height, width = image_size
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    all_boxes, all_scores, all_classes = [], [], []
    for c in range(probs.shape[1] - 1):
        candidates = [a for a in range(len(anchors)) if probs[a, c] > score_threshold]
        candidates = sorted(candidates, key=lambda a: (-probs[a, c], a))[:topk]
        kept = greedy_nms(boxes[candidates], probs[candidates, c], nms_threshold)
        all_boxes += [boxes[candidates[k]] for k in kept]
        all_scores += [probs[candidates[k], c] for k in kept]
        all_classes += [c] * len(kept)
    order = sorted(range(len(all_scores)), key=lambda i: -all_scores[i])[:max_detections]
    return (
        np.asarray([all_boxes[i] for i in order]).reshape(-1, 4),
        np.asarray([all_scores[i] for i in order]),
        np.asarray([all_classes[i] for i in order], np.int64),
    )

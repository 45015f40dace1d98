"""Float64 NumPy Faster R-CNN pieces written from the papers and detectron2's documented semantics
(anchor generator, Matcher, Box2BoxTransform, find_top_rpn_proposals, fast_rcnn_inference), not
from vision_jax's code, for the detection tests. Boxes are (x1, y1, x2, y2); loops over images and
classes are plain Python, as in detectron2.
"""

from __future__ import annotations

import math

import numpy as np

SCALE_CLAMP = math.log(1000.0 / 16)


def anchors(feature_shape, stride, sizes, aspect_ratios) -> np.ndarray:
    """detectron2 DefaultAnchorGenerator (offset 0): [H * W * A, 4], location-major, size-major cells."""
    cell = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            cell.append([-w / 2, -h / 2, w / 2, h / 2])
    cell = np.asarray(cell)
    out = []
    for i in range(feature_shape[0]):
        for j in range(feature_shape[1]):
            out.append(cell + np.array([j * stride, i * stride, j * stride, i * stride]))
    return np.concatenate(out).reshape(-1, 4)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(iou_matrix: np.ndarray, fg: float, bg: float, low_quality: bool):
    """detectron2 Matcher([bg, fg], [0, -1, 1]): (matched gt [A], labels [A]); iou_matrix [G, A], G >= 1."""
    matched = iou_matrix.argmax(axis=0)
    best = iou_matrix.max(axis=0)
    labels = np.where(best >= fg, 1, np.where(best >= bg, -1, 0))
    if low_quality:
        highest = iou_matrix.max(axis=1, keepdims=True)
        labels[np.any((iou_matrix == highest) & (highest > 0), axis=0)] = 1
    return matched, labels


def encode(gt: np.ndarray, boxes: np.ndarray, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    gt, boxes = np.asarray(gt, np.float64), np.asarray(boxes, np.float64)
    pw, ph = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    px, py = boxes[:, 0] + 0.5 * pw, boxes[:, 1] + 0.5 * ph
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    wx, wy, ww, wh = weights
    return np.stack([wx * (gx - px) / pw, wy * (gy - py) / ph, ww * np.log(gw / pw), wh * np.log(gh / ph)], -1)


def decode(deltas: np.ndarray, boxes: np.ndarray, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    deltas, boxes = np.asarray(deltas, np.float64), np.asarray(boxes, np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = np.minimum(deltas[:, 2] / ww, SCALE_CLAMP), np.minimum(deltas[:, 3] / wh, SCALE_CLAMP)
    x, y, pw, ph = dx * w + cx, dy * h + cy, np.exp(dw) * w, np.exp(dh) * h
    return np.stack([x - 0.5 * pw, y - 0.5 * ph, x + 0.5 * pw, y + 0.5 * ph], -1)


def clip(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    return np.stack(
        [
            np.clip(boxes[:, 0], 0, width),
            np.clip(boxes[:, 1], 0, height),
            np.clip(boxes[:, 2], 0, width),
            np.clip(boxes[:, 3], 0, height),
        ],
        -1,
    )


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy NMS (descending score, ties to the lower index; IoU > threshold suppresses)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    overlaps = iou(boxes, boxes)
    kept: list[int] = []
    for i in order:
        if all(overlaps[i, k] <= threshold for k in kept):
            kept.append(i)
    return kept


def per_class_nms(boxes, scores, classes, threshold) -> list[int]:
    """NMS within each class, merged by descending score (ties to the lower index)."""
    kept = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        kept += [members[k] for k in greedy_nms(boxes[members], scores[members], threshold)]
    return sorted(kept, key=lambda i: (-scores[i], i))


def find_top_proposals(
    logits, deltas, level_anchors, image_size, pre_nms_topk, post_nms_topk, nms_threshold, min_size=0.0
):
    """detectron2 find_top_rpn_proposals for one image: (boxes [P, 4], logits [P]), P <= post_nms_topk."""
    boxes, scores, levels = [], [], []
    for level, (lo, de, an) in enumerate(zip(logits, deltas, level_anchors)):
        lo = np.asarray(lo, np.float64)
        top = sorted(range(len(lo)), key=lambda i: (-lo[i], i))[:pre_nms_topk]
        boxes.append(decode(np.asarray(de)[top], np.asarray(an)[top]))
        scores.append(lo[top])
        levels.append(np.full(len(top), level))
    boxes, scores, levels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(levels)
    boxes = clip(boxes, image_size[0], image_size[1])
    keep = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
    kept = per_class_nms(boxes, scores, levels, nms_threshold)[:post_nms_topk]
    return boxes[kept], scores[kept]


def roi_candidates(proposals, proposal_valid, gt_boxes, gt_valid, iou_threshold=0.5, append_gt=True):
    """detectron2 label_and_sample_proposals before its sampling, one image, no crowd boxes: the
    candidates (valid proposals, then the valid ground truth if append_gt) [M, 4], their labels [M]
    (1 foreground, 0 background) and matched ground-truth rows [M], indices into all G rows of
    gt_boxes (padding rows included)."""
    rows = np.flatnonzero(gt_valid)
    candidates = np.asarray(proposals, np.float64)[np.asarray(proposal_valid, bool)]
    if append_gt:
        candidates = np.concatenate([candidates, np.asarray(gt_boxes, np.float64)[rows]])
    overlaps = iou(np.asarray(gt_boxes)[rows], candidates)
    matched, labels = match(overlaps, iou_threshold, iou_threshold, low_quality=False)
    return candidates, labels, rows[matched]


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fast_rcnn_inference(
    logits,
    deltas,
    proposals,
    image_size,
    score_threshold=0.05,
    nms_threshold=0.5,
    max_detections=100,
    weights=(10.0, 10.0, 5.0, 5.0),
):
    """detectron2 fast_rcnn_inference_single_image: (boxes [K, 4], scores [K], classes [K]); background last."""
    num_rois, num_classes = np.asarray(deltas).shape[:2]
    scores = softmax(logits)[:, :num_classes]
    boxes = decode(np.asarray(deltas).reshape(-1, 4), np.repeat(np.asarray(proposals), num_classes, axis=0), weights)
    boxes = clip(boxes, image_size[0], image_size[1])
    scores, classes = scores.reshape(-1), np.tile(np.arange(num_classes), num_rois)
    candidates = np.flatnonzero(scores > score_threshold)
    kept = per_class_nms(boxes[candidates], scores[candidates], classes[candidates], nms_threshold)[:max_detections]
    chosen = candidates[kept]
    return boxes[chosen], scores[chosen], classes[chosen]


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    return np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x)))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


# --- Mask R-CNN (detectron2's MaskRCNNConvUpsampleHead, BitMasks.crop_and_resize, mask_rcnn_loss) ---


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, padding: int) -> np.ndarray:
    """torch Conv2d (cross-correlation) on HWC input: x [H, W, Cin], weight [Cout, Cin, k, k] -> [H', W', Cout]."""
    k = weight.shape[-1]
    x = np.pad(np.asarray(x, np.float64), ((padding, padding), (padding, padding), (0, 0)))
    height, width = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((height, width, weight.shape[0])) + bias
    for dy in range(k):
        for dx in range(k):
            out += x[dy:dy + height, dx:dx + width] @ np.asarray(weight[:, :, dy, dx], np.float64).T
    return out


def conv_transpose_2x2(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch ConvTranspose2d(kernel 2, stride 2): x [H, W, Cin], weight [Cin, Cout, 2, 2] -> [2H, 2W, Cout],
    out[2i + a, 2j + b] = x[i, j] @ weight[:, :, a, b] + bias."""
    height, width = x.shape[:2]
    out = np.zeros((2 * height, 2 * width, weight.shape[1])) + bias
    for a in range(2):
        for b in range(2):
            out[a::2, b::2] += np.asarray(x, np.float64) @ np.asarray(weight[:, :, a, b], np.float64)
    return out


def mask_head(pooled: np.ndarray, convs, deconv, predictor) -> np.ndarray:
    """MaskRCNNConvUpsampleHead on RoIs [R, P, P, D] with torch-layout (weight, bias) pairs:
    convs 3x3 + ReLU, deconv 2x2/2 + ReLU, 1x1 predictor -> logits [R, 2P, 2P, C]."""
    out = []
    for x in pooled:
        for weight, bias in convs:
            x = np.maximum(conv2d(x, weight, bias, 1), 0)
        x = np.maximum(conv_transpose_2x2(x, *deconv), 0)
        out.append(conv2d(x, predictor[0], predictor[1], 0))
    return np.stack(out)


def bilinear(image: np.ndarray, y: float, x: float) -> float:
    """torchvision roi_align's bilinear_interpolate: 0 outside [-1, size], borders clamped."""
    height, width = image.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    return ((1 - ly) * (1 - lx) * image[y_low, x_low] + (1 - ly) * lx * image[y_low, x_high]
            + ly * (1 - lx) * image[y_high, x_low] + ly * lx * image[y_high, x_high])  # fmt: skip


def crop_and_resize(mask: np.ndarray, box, size: int) -> np.ndarray:
    """detectron2 BitMasks.crop_and_resize for one mask before `>= 0.5`: ROIAlign((size, size),
    spatial_scale 1, sampling_ratio 0 (ceil(extent / size) samples per bin), aligned=True)."""
    mask = np.asarray(mask, np.float64)
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    bin_h, bin_w = (y2 - y1) / size, (x2 - x1) / size
    grid_h, grid_w = math.ceil((y2 - y1) / size), math.ceil((x2 - x1) / size)
    out = np.zeros((size, size))
    if grid_h <= 0 or grid_w <= 0:
        return out
    for i in range(size):
        for j in range(size):
            total = 0.0
            for gy in range(grid_h):
                for gx in range(grid_w):
                    y = y1 + i * bin_h + (gy + 0.5) * bin_h / grid_h
                    x = x1 + j * bin_w + (gx + 0.5) * bin_w / grid_w
                    total += bilinear(mask, y, x)
            out[i, j] = total / (grid_h * grid_w)
    return out


def mask_targets(gt_masks: np.ndarray, gt_index, rois, image_size, size: int) -> np.ndarray:
    """Soft targets [R, size, size] (threshold at 0.5 for detectron2's): each RoI's matched mask, the
    canvas-aligned [G, Hm, Wm] masks read at the RoI scaled by (Wm / W, Hm / H)."""
    scale_y, scale_x = gt_masks.shape[1] / image_size[0], gt_masks.shape[2] / image_size[1]
    scale = np.array([scale_x, scale_y, scale_x, scale_y])
    return np.stack([crop_and_resize(gt_masks[g], np.asarray(roi, np.float64) * scale, size) for g, roi in zip(gt_index, rois)])


def mask_loss(logits: np.ndarray, classes, foreground, targets) -> float:
    """detectron2 mask_rcnn_loss: BCE with logits of the ground-truth class's channel, mean over the
    foreground RoIs' pixels; logits [N, M, M, C]; 0 without foreground (mask_logits.sum() * 0)."""
    rows = np.flatnonzero(foreground)
    if len(rows) == 0:
        return 0.0
    chosen = np.stack([np.asarray(logits, np.float64)[r, :, :, classes[r]] for r in rows])
    return float(binary_cross_entropy(chosen, np.asarray(targets, np.float64)[rows]).mean())


def mask_inference(logits: np.ndarray, classes) -> np.ndarray:
    """detectron2 mask_rcnn_inference: sigmoid of the predicted class's channel -> [K, M, M]."""
    chosen = np.stack([np.asarray(logits, np.float64)[k, :, :, c] for k, c in enumerate(classes)])
    return 1.0 / (1.0 + np.exp(-chosen))

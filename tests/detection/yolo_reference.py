"""Float64 NumPy references of YOLO v1 / v3 assignment, losses and decoding, written with loops over
ground truths and predictions from the papers' text (and darknet's rules where the papers are silent),
independently of vision_jax.ops.yolo_targets and vision_jax.ops.postprocess; used by
test_yolo_targets.py (the ops) and test_yolo_models.py (the models). Boxes xyxy in input pixels."""

from __future__ import annotations

import numpy as np


def iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def usable(box, valid, crowd) -> bool:
    return bool(valid) and not bool(crowd) and box[2] > box[0] and box[3] > box[1]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def bce(logit, target) -> float:
    p = sigmoid(logit)
    return float(-(target * np.log(p) + (1 - target) * np.log(1 - p)))


# ----------------------------------------------------------------------------- v1
def v1_box_xyxy(box, row, col, grid, height, width):
    """(x, y, sqrt_w, sqrt_h) of cell (row, col) -> xyxy pixels."""
    cx, cy = (col + box[0]) * width / grid, (row + box[1]) * height / grid
    w, h = box[2] ** 2 * width, box[3] ** 2 * height
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def v1_targets(pred, gt_boxes, gt_classes, gt_valid, gt_crowd, height, width, num_classes):
    pred, gt_boxes = np.asarray(pred, np.float64), np.asarray(gt_boxes, np.float64)
    grid, _, num_boxes, _ = pred.shape
    owner = -np.ones((grid, grid), int)
    for g, box in enumerate(gt_boxes):  # in order: the last one in a cell wins
        if not usable(box, gt_valid[g], gt_crowd[g]):
            continue
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        col = min(max(int(np.floor(cx / (width / grid))), 0), grid - 1)
        row = min(max(int(np.floor(cy / (height / grid))), 0), grid - 1)
        owner[row, col] = g
    out = {
        "responsible": np.zeros((grid, grid, num_boxes), bool),
        "box_targets": np.zeros((grid, grid, num_boxes, 4)),
        "iou": np.zeros((grid, grid, num_boxes)),
        "object_cells": owner >= 0,
        "class_targets": np.zeros((grid, grid, num_classes)),
        "gt_index": owner,
    }
    for row in range(grid):
        for col in range(grid):
            g = owner[row, col]
            if g < 0:
                continue
            box = gt_boxes[g]
            cx, cy, w, h = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
            target = np.array(
                [cx * grid / width - col, cy * grid / height - row, np.sqrt(w / width), np.sqrt(h / height)]
            )
            ious = [iou(v1_box_xyxy(pred[row, col, b], row, col, grid, height, width), box) for b in range(num_boxes)]
            if max(ious) > 0:
                best = int(np.argmax(ious))
            else:  # darknet: smallest RMSE of (x, y, w, h) in image fractions
                truth = np.array([cx / width, cy / height, w / width, h / height])
                rmse = []
                for b in range(num_boxes):
                    p = pred[row, col, b]
                    guess = np.array([(col + p[0]) / grid, (row + p[1]) / grid, p[2] ** 2, p[3] ** 2])
                    rmse.append(np.sqrt(np.sum((guess - truth) ** 2)))
                best = int(np.argmin(rmse))
            out["responsible"][row, col, best] = True
            out["box_targets"][row, col, best] = target
            out["iou"][row, col, best] = ious[best]
            out["class_targets"][row, col, gt_classes[g]] = 1.0
    return out


def v1_loss(boxes, confidences, class_probs, t, lambda_coord, lambda_noobj, rescore):
    boxes, confidences, class_probs = (np.asarray(a, np.float64) for a in (boxes, confidences, class_probs))
    coord = obj = noobj = cls = 0.0
    grid, _, num_boxes, _ = boxes.shape
    for row in range(grid):
        for col in range(grid):
            for b in range(num_boxes):
                if t["responsible"][row, col, b]:
                    coord += np.sum((boxes[row, col, b] - t["box_targets"][row, col, b]) ** 2)
                    target = t["iou"][row, col, b] if rescore else 1.0
                    obj += (confidences[row, col, b] - target) ** 2
                else:
                    noobj += confidences[row, col, b] ** 2
            if t["object_cells"][row, col]:
                cls += np.sum((class_probs[row, col] - t["class_targets"][row, col]) ** 2)
    return {"coord": lambda_coord * coord, "object": obj, "no_object": lambda_noobj * noobj, "class": cls}


# ----------------------------------------------------------------------------- v3
def v3_decode(levels, priors, masks, strides):
    """levels: list of [H, W, A, >=4] raw -> [N, 4] xyxy in (level, row, col, prior) order."""
    boxes = []
    for out, mask, stride in zip(levels, masks, strides):
        out = np.asarray(out, np.float64)
        for row in range(out.shape[0]):
            for col in range(out.shape[1]):
                for a, k in enumerate(mask):
                    t = out[row, col, a]
                    cx, cy = (sigmoid(t[0]) + col) * stride, (sigmoid(t[1]) + row) * stride
                    w = priors[k][0] * np.exp(min(t[2], np.log(1000 / 16)))
                    h = priors[k][1] * np.exp(min(t[3], np.log(1000 / 16)))
                    boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(boxes)


def v3_slot(level, row, col, slot, shapes, masks):
    offset = sum(h * w * len(m) for (h, w), m in zip(shapes[:level], masks[:level]))
    return offset + (row * shapes[level][1] + col) * len(masks[level]) + slot


def v3_targets(pred_boxes, gt_boxes, gt_classes, gt_valid, gt_crowd, shapes, priors, masks, strides,
               height, width, num_classes, ignore_threshold, prior_iou_threshold=None):  # fmt: skip
    pred_boxes, gt_boxes = np.asarray(pred_boxes, np.float64), np.asarray(gt_boxes, np.float64)
    num = len(pred_boxes)
    owner = -np.ones(num, int)
    for g, box in enumerate(gt_boxes):  # in order: the last one on a slot wins
        if not usable(box, gt_valid[g], gt_crowd[g]):
            continue
        w, h = box[2] - box[0], box[3] - box[1]
        shape_ious = [iou([0, 0, w, h], [0, 0, pw, ph]) for pw, ph in priors]
        chosen = [int(np.argmax(shape_ious))]  # the paper: the best prior only
        if prior_iou_threshold is not None:  # AlexeyAB darknet's iou_thresh: also every prior above it
            chosen += [k for k, v in enumerate(shape_ious) if v > prior_iou_threshold and k != chosen[0]]
        for k in chosen:
            level = next(l for l, mask in enumerate(masks) if k in mask)
            stride = strides[level]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            col = min(max(int(np.floor(cx / stride)), 0), shapes[level][1] - 1)
            row = min(max(int(np.floor(cy / stride)), 0), shapes[level][0] - 1)
            owner[v3_slot(level, row, col, list(masks[level]).index(k), shapes, masks)] = g
    out = {
        "assigned": owner >= 0,
        "gt_index": owner,
        "box_targets": np.zeros((num, 4)),
        "box_weights": np.zeros(num),
        "class_targets": np.zeros((num, num_classes)),
        "ignored": np.zeros(num, bool),
        "max_iou": np.zeros(num),
    }
    for level, ((grid_h, grid_w), mask) in enumerate(zip(shapes, masks)):
        for row in range(grid_h):
            for col in range(grid_w):
                for slot, k in enumerate(mask):
                    n = v3_slot(level, row, col, slot, shapes, masks)
                    ious = [iou(pred_boxes[n], gt_boxes[g]) for g in range(len(gt_boxes)) if gt_valid[g]]
                    out["max_iou"][n] = max(ious, default=0.0)
                    g = owner[n]
                    if g < 0:
                        out["ignored"][n] = out["max_iou"][n] > ignore_threshold
                        continue
                    box = gt_boxes[g]
                    w, h = box[2] - box[0], box[3] - box[1]
                    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                    stride = strides[level]
                    out["box_targets"][n] = [
                        cx / stride - col,
                        cy / stride - row,
                        np.log(w / priors[k][0]),
                        np.log(h / priors[k][1]),
                    ]
                    out["box_weights"][n] = 2.0 - w * h / (height * width)
                    out["class_targets"][n, gt_classes[g]] = 1.0
    return out


def v3_loss(raw, t, box_weight, objectness_weight, class_weight):
    raw = np.asarray(raw, np.float64)
    box = objectness = cls = 0.0
    for n in range(len(raw)):
        if t["assigned"][n]:
            tx, ty, tw, th = t["box_targets"][n]
            box += t["box_weights"][n] * (
                bce(raw[n, 0], tx) + bce(raw[n, 1], ty) + (raw[n, 2] - tw) ** 2 + (raw[n, 3] - th) ** 2
            )
            objectness += bce(raw[n, 4], 1.0)
            cls += sum(bce(raw[n, 5 + c], t["class_targets"][n, c]) for c in range(raw.shape[1] - 5))
        elif not t["ignored"][n]:
            objectness += bce(raw[n, 4], 0.0)
    return {"box": box_weight * box, "objectness": objectness_weight * objectness, "class": class_weight * cls}


# ----------------------------------------------------------------------------- decoding
def detections(boxes, class_scores, height, width, score_threshold, nms_threshold, max_detections, pre_nms_topk):
    """YOLO's use of the post-processor: clip, threshold, keep the pre_nms_topk best (box, class) pairs
    (ties: lower n * C + c), per-class greedy NMS, top-k. boxes [N, 4] xyxy pixels, class_scores [N, C].
    -> list of (box [4], score, class) by decreasing score."""
    boxes = np.asarray(boxes, np.float64).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    candidates = [
        (float(class_scores[n, c]), n * class_scores.shape[1] + c, n, c)
        for n in range(len(boxes))
        for c in range(class_scores.shape[1])
        if class_scores[n, c] > score_threshold
    ]
    candidates.sort(key=lambda item: (-item[0], item[1]))
    kept = []
    for score, _, n, c in candidates[:pre_nms_topk]:
        if all(kc != c or iou(boxes[n], kb) <= nms_threshold for kb, _, kc in kept):
            kept.append((boxes[n], score, c))
        if len(kept) == max_detections:
            break
    return kept

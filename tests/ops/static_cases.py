"""One small valid call of every public op (but the post-processor, ops/postprocess.py), as keyword
arguments, for the tests of what must be static under jit. Imported by basename from the ops tests.

Arguments are drawn from `rng`; sizes are small so that each op compiles in well under a second.
"""
from __future__ import annotations

import numpy as np

import vision_jax.ops as vops


def _boxes(rng, n, size=64.0):
    xy = rng.uniform(0, size * 0.6, (n, 2))
    wh = rng.uniform(2, size * 0.4, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _yolo_v3(rng):
    priors = ((10.0, 13.0), (30.0, 20.0), (60.0, 50.0), (90.0, 100.0))
    masks = ((2, 3), (0, 1))
    feature_shapes = ((2, 2), (4, 4))
    strides = (32.0, 16.0)
    layout = vops.yolo_v3_layout(feature_shapes, priors, masks)
    return priors, masks, feature_shapes, strides, layout


def cases(rng) -> dict[str, dict]:
    """op name -> keyword arguments of one valid call."""
    boxes = _boxes(rng, 6)
    gt = _boxes(rng, 3)
    features = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    rois = _boxes(rng, 5, 32.0)
    roi_indices = rng.integers(0, 2, 5).astype(np.int32)
    labels = rng.integers(-1, 3, 20).astype(np.int32)
    priors, masks, feature_shapes, strides, layout = _yolo_v3(rng)
    num_v3 = len(layout["prior"])
    v3_gt = dict(gt_boxes=gt, gt_classes=np.array([0, 1, 2], np.int32), gt_valid=np.array([True, True, False]),
                 gt_is_crowd=np.array([False, False, False]))
    v3_targets = vops.yolo_v3_targets(pred_boxes=_boxes(rng, num_v3), **v3_gt, layout=layout, priors=priors,
                                      strides=strides, image_size=(64.0, 64.0), num_classes=3)
    v1_pred = rng.uniform(0.1, 0.9, (2, 2, 2, 4)).astype(np.float32)
    v1_targets = vops.yolo_v1_targets(pred_boxes=v1_pred, **v3_gt, image_size=(64.0, 64.0), num_classes=3)
    default_boxes = _boxes(rng, 10)
    return {
        "assign_fpn_levels": dict(boxes=boxes, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4),
        "batched_nms": dict(boxes=boxes, scores=rng.uniform(size=6).astype(np.float32), classes=rng.integers(0, 2, 6),
                            iou_threshold=0.5, max_output_size=4, score_threshold=0.1, tile_size=4),
        "bed_of_nails_unpool": dict(x=features, factor=2),
        "box_area": dict(boxes=boxes),
        "box_convert": dict(boxes=boxes, in_fmt="xyxy", out_fmt="cxcywh"),
        "box_ioa": dict(boxes1=gt, boxes2=boxes),
        "box_iou": dict(boxes1=gt, boxes2=boxes),
        "cell_anchors": dict(sizes=(16.0, 32.0), aspect_ratios=(0.5, 1.0), convention="torchvision"),
        "clip_boxes": dict(boxes=boxes, height=40.0, width=50.0),
        "cxcywh_to_xyxy": dict(boxes=boxes),
        "decode_boxes": dict(deltas=rng.normal(size=(6, 4)).astype(np.float32), boxes=boxes, weights=(10.0, 10.0, 5.0, 5.0),
                             clamp=4.0),
        "distance_box_iou": dict(boxes1=gt, boxes2=boxes, eps=1e-7),
        "elementwise_box_iou": dict(boxes1=boxes, boxes2=boxes[::-1]),
        "elementwise_distance_box_iou": dict(boxes1=boxes, boxes2=boxes[::-1], eps=1e-7),
        "elementwise_generalized_box_iou": dict(boxes1=boxes, boxes2=boxes[::-1]),
        "encode_boxes": dict(reference_boxes=boxes, proposals=boxes[::-1], weights=(10.0, 10.0, 5.0, 5.0), min_size=1e-6),
        "generalized_box_iou": dict(boxes1=gt, boxes2=boxes),
        "giou_loss": dict(pred_boxes=boxes, target_boxes=boxes[::-1], reduction="mean", eps=1e-7),
        "grid_anchors": dict(feature_shape=(3, 4), stride=8, sizes=(16.0,), aspect_ratios=(0.5, 1.0), convention="torchvision",
                             offset=0.5),
        "hard_negative_mask": dict(background_loss=rng.uniform(size=10).astype(np.float32), positive=rng.uniform(size=10) < 0.2,
                                   neg_pos_ratio=3.0, min_negatives=1),
        "mask_targets": dict(gt_masks=(rng.uniform(size=(3, 16, 16)) < 0.5).astype(np.float32),
                             matched_gt_indices=rng.integers(0, 3, 5).astype(np.int32), rois=_boxes(rng, 5, 16.0), mask_size=4,
                             threshold=0.5, max_sampling_ratio=4),
        "mask_targets_from_box_masks": dict(box_masks=rng.uniform(size=(3, 8, 8)).astype(np.float32), gt_boxes=gt,
                                            matched_gt_indices=rng.integers(0, 3, 5).astype(np.int32),
                                            rois=_boxes(rng, 5, 64.0), mask_size=4, threshold=0.5, max_sampling_ratio=4),
        "match_boxes": dict(gt_boxes=gt, gt_valid=np.array([True, True, False]), anchors=boxes,
                            gt_is_crowd=np.array([False, True, False]), fg_threshold=0.6, bg_threshold=0.3,
                            allow_low_quality_matches=True, crowd_ioa_threshold=0.7),
        "match_iou": dict(iou=rng.uniform(size=(3, 6)).astype(np.float32), gt_valid=np.array([True, True, False]),
                          fg_threshold=0.6, bg_threshold=0.3, allow_low_quality_matches=True),
        "max_pool": dict(x=features, window=3, strides=2, padding=((1, 1), (1, 1))),
        "max_pool_with_argmax": dict(x=features, window=2, strides=2, padding="SAME"),
        "max_unpool": dict(pooled=features[:, :4, :4], argmax=vops.max_pool_with_argmax(features, 2, 2)[1],
                           output_shape=(8, 8)),
        "multilevel_anchors": dict(feature_shapes=((4, 4), (2, 2)), strides=(8, 16), sizes_per_level=((16.0,), (32.0,)),
                                   aspect_ratios=(0.5, 1.0), convention="torchvision", offset=0.0),
        "multilevel_roi_align": dict(features={2: features, 3: features[:, :4, :4]}, boxes=rois, box_indices=roi_indices,
                                     levels=rng.integers(2, 4, 5).astype(np.int32), output_size=2, sampling_ratio=2,
                                     aligned=True, spatial_scales=(0.25, 0.125), channels=3),
        "nearest_unpool": dict(x=features, factor=(2, 1)),
        "nms": dict(boxes=boxes, scores=rng.uniform(size=6).astype(np.float32), iou_threshold=0.5, max_output_size=4,
                    score_threshold=0.1, tile_size=4),
        "paste_masks_in_image": dict(masks=rng.uniform(size=(3, 4, 4)).astype(np.float32), boxes=_boxes(rng, 3, 16.0),
                                     image_height=16, image_width=20, threshold=0.5),
        "roi_align": dict(features=features, boxes=rois, box_indices=roi_indices, output_size=(2, 3), spatial_scale=0.25,
                          sampling_ratio=0, aligned=True, max_sampling_ratio=3, channels=3),
        "roi_pool": dict(features=features, boxes=rois, box_indices=roi_indices, output_size=2, spatial_scale=0.25,
                         channels=3),
        "sample_balanced": dict(labels=labels, key=np.array([0, 7], np.uint32), num_samples=8, positive_fraction=0.25, bg_label=0),
        "sample_balanced_masks": dict(labels=labels, key=np.array([0, 7], np.uint32), num_samples=8, positive_fraction=0.25,
                                      bg_label=0),
        "sigmoid_focal_loss": dict(logits=rng.normal(size=(4, 3)).astype(np.float32),
                                   targets=(rng.uniform(size=(4, 3)) < 0.5).astype(np.float32), alpha=0.25, gamma=2.0,
                                   reduction="sum"),
        "small_box_mask": dict(boxes=boxes, min_size=5.0),
        "smooth_l1_loss": dict(pred=boxes, target=boxes[::-1], beta=1.0, reduction="mean"),
        "softmax_cross_entropy": dict(logits=rng.normal(size=(6, 3)).astype(np.float32), labels=np.array([0, 1, 2, 255, 1, 0]),
                                      ignore_index=255, weights=np.array([1.0, 2.0, 0.5], np.float32)),
        "softmax_cross_entropy_per_element": dict(logits=rng.normal(size=(6, 3)).astype(np.float32),
                                                  labels=np.array([0, 1, 2, 255, 1, 0]), ignore_index=255,
                                                  weights=np.array([1.0, 2.0, 0.5], np.float32)),
        "ssd_default_boxes": dict(feature_shapes=((2, 2), (1, 1)), image_size=(64, 64), aspect_ratios_per_level=((2,), (2,)),
                                  scales=(0.2, 0.5, 0.9), min_ratio=0.2, max_ratio=0.9, steps=(32.0, 64.0), clip=True,
                                  out_format="xyxy"),
        "ssd_detect": dict(class_logits=rng.normal(size=(10, 3)).astype(np.float32),
                           box_deltas=rng.normal(size=(10, 4)).astype(np.float32), default_boxes=default_boxes,
                           image_size=np.array([64.0, 64.0], np.float32), score_threshold=0.01, nms_threshold=0.45,
                           topk_candidates=5, max_detections=4, box_weights=(10.0, 10.0, 5.0, 5.0)),
        "ssd_loss": dict(class_logits=rng.normal(size=(2, 10, 3)).astype(np.float32),
                         box_deltas=rng.normal(size=(2, 10, 4)).astype(np.float32), labels=rng.integers(0, 3, (2, 10)),
                         box_targets=rng.normal(size=(2, 10, 4)).astype(np.float32), neg_pos_ratio=3.0, min_negatives=1,
                         smooth_l1_beta=1.0),
        "ssd_match": dict(gt_boxes=gt, gt_valid=np.array([True, True, False]), default_boxes=default_boxes,
                          gt_is_crowd=np.array([False, False, False]), iou_threshold=0.5),
        "ssd_scales": dict(num_levels=3, min_ratio=0.2, max_ratio=0.9),
        "ssd_targets": dict(gt_boxes=gt, gt_classes=np.array([0, 1, 1]), gt_valid=np.array([True, True, False]),
                            default_boxes=default_boxes, num_classes=2, gt_is_crowd=np.array([False, False, False]),
                            iou_threshold=0.5, box_weights=(10.0, 10.0, 5.0, 5.0)),
        "valid_box_mask": dict(boxes=boxes),
        "foreground_scores": dict(logits=rng.normal(size=(6, 4)).astype(np.float32)),
        "multiclass_detections": dict(boxes=boxes, scores=rng.uniform(size=(6, 3)).astype(np.float32),
                                      image_size=np.array([64.0, 64.0], np.float32), score_threshold=0.1,
                                      nms_threshold=0.45, max_detections=4, pre_nms_topk=5),
        "xywh_to_xyxy": dict(boxes=boxes),
        "xyxy_to_cxcywh": dict(boxes=boxes),
        "xyxy_to_xywh": dict(boxes=boxes),
        "yolo_anchor_priors": dict(anchors=priors, masks=masks, strides=strides, in_grid_units=True),
        "yolo_grid_offsets": dict(feature_shape=(3, 4)),
        "yolo_v1_boxes_to_xyxy": dict(boxes=v1_pred, image_size=(64.0, 64.0)),
        "yolo_v1_loss": dict(boxes=v1_pred, confidences=rng.uniform(size=(2, 2, 2)).astype(np.float32),
                             class_probs=rng.uniform(size=(2, 2, 3)).astype(np.float32), targets=v1_targets, lambda_coord=5.0,
                             lambda_noobj=0.5, rescore=True),
        "yolo_v1_targets": dict(pred_boxes=v1_pred, **v3_gt, image_size=(64.0, 64.0), num_classes=3),
        "yolo_v3_decode": dict(raw=rng.normal(size=(num_v3, 8)).astype(np.float32), layout=layout, strides=strides),
        "yolo_v3_layout": dict(feature_shapes=feature_shapes, priors=priors, masks=masks),
        "yolo_v3_loss": dict(raw=rng.normal(size=(num_v3, 8)).astype(np.float32), targets=v3_targets, box_weight=1.0,
                             objectness_weight=1.0, class_weight=1.0),
        "yolo_v3_targets": dict(pred_boxes=_boxes(rng, num_v3), **v3_gt, layout=layout, priors=priors, strides=strides,
                                image_size=(64.0, 64.0), num_classes=3, ignore_threshold=0.5, prior_iou_threshold=0.3),
    }

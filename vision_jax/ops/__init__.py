"""vision_jax.ops: functional detection and segmentation ops in plain JAX.

    import vision_jax.ops as vops
    keep, num_kept = vops.nms(boxes, scores, iou_threshold=0.7, max_output_size=1000)

Boxes are (x1, y1, x2, y2) in absolute pixels unless a function says otherwise; feature maps
are NHWC. Every op has static output shapes (padding plus a count or mask), works under
`jit` and `vmap`, and is differentiable where that makes sense. This package imports only
jax, jax.numpy and numpy.

Static arguments. Arguments that set an output shape or choose a code path (sizes, counts,
flags, format names) must be static under `jit`; each op's docstring names them in a line
"Static under jit: ...", e.g. for `roi_align`:

    jax.jit(vops.roi_align, static_argnames=("output_size", "sampling_ratio", "aligned"))

(unhashable ones, such as `yolo_v3_layout`'s dict, are closed over with functools.partial). An op
without that line takes every argument traced; "every argument" marks the builders that compute
constants with NumPy (anchors, default boxes, YOLO tables): call them outside `jit`.
`roi_align`, `roi_pool` and `multilevel_roi_align` refuse traced static arguments with a
TypeError naming them, and take an optional `channels=C` that checks the NHWC layout (an NCHW map
is otherwise accepted and gives a wrong-shaped result).
"""

from vision_jax.ops.anchors import (
    cell_anchors,
    grid_anchors,
    multilevel_anchors,
    ssd_default_boxes,
    ssd_scales,
    yolo_anchor_priors,
    yolo_grid_offsets,
)
from vision_jax.ops.boxes import (
    box_area,
    box_convert,
    box_ioa,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    decode_boxes,
    distance_box_iou,
    elementwise_box_iou,
    elementwise_distance_box_iou,
    elementwise_generalized_box_iou,
    encode_boxes,
    generalized_box_iou,
    small_box_mask,
    valid_box_mask,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from vision_jax.ops.losses import (
    giou_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
    softmax_cross_entropy,
    softmax_cross_entropy_per_element,
)
from vision_jax.ops.masks import mask_targets, mask_targets_from_box_masks, paste_masks_in_image
from vision_jax.ops.matching import match_boxes, match_iou, sample_balanced, sample_balanced_masks
from vision_jax.ops.nms import batched_nms, nms
from vision_jax.ops.postprocess import foreground_scores, multiclass_detections
from vision_jax.ops.pooling import bed_of_nails_unpool, max_pool, max_pool_with_argmax, max_unpool, nearest_unpool
from vision_jax.ops.roi import assign_fpn_levels, multilevel_roi_align, roi_align, roi_pool
from vision_jax.ops.ssd_targets import hard_negative_mask, ssd_detect, ssd_loss, ssd_match, ssd_targets
from vision_jax.ops.yolo_targets import (
    yolo_v1_boxes_to_xyxy,
    yolo_v1_loss,
    yolo_v1_targets,
    yolo_v3_decode,
    yolo_v3_layout,
    yolo_v3_loss,
    yolo_v3_targets,
)

__all__ = [
    "assign_fpn_levels",
    "batched_nms",
    "bed_of_nails_unpool",
    "box_area",
    "box_convert",
    "box_ioa",
    "box_iou",
    "cell_anchors",
    "clip_boxes",
    "cxcywh_to_xyxy",
    "decode_boxes",
    "distance_box_iou",
    "elementwise_box_iou",
    "elementwise_distance_box_iou",
    "elementwise_generalized_box_iou",
    "encode_boxes",
    "foreground_scores",
    "generalized_box_iou",
    "giou_loss",
    "grid_anchors",
    "hard_negative_mask",
    "mask_targets",
    "mask_targets_from_box_masks",
    "match_boxes",
    "match_iou",
    "max_pool",
    "max_pool_with_argmax",
    "max_unpool",
    "multilevel_anchors",
    "multiclass_detections",
    "multilevel_roi_align",
    "nearest_unpool",
    "nms",
    "paste_masks_in_image",
    "roi_align",
    "roi_pool",
    "sample_balanced",
    "sample_balanced_masks",
    "sigmoid_focal_loss",
    "small_box_mask",
    "smooth_l1_loss",
    "softmax_cross_entropy",
    "softmax_cross_entropy_per_element",
    "ssd_default_boxes",
    "ssd_detect",
    "ssd_loss",
    "ssd_match",
    "ssd_scales",
    "ssd_targets",
    "valid_box_mask",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
    "yolo_anchor_priors",
    "yolo_grid_offsets",
    "yolo_v1_boxes_to_xyxy",
    "yolo_v1_loss",
    "yolo_v1_targets",
    "yolo_v3_decode",
    "yolo_v3_layout",
    "yolo_v3_loss",
    "yolo_v3_targets",
]

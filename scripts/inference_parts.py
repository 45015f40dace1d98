"""A detector's inference split into the parts the R-CNN lineage changed, each a jitted function of its
own so that it can be timed apart (imported as `inference_parts` by scripts/compare_detectors.py):

    proposals    regions proposed for the image: the RPN and its selection (Faster R-CNN); selective
                 search (R-CNN, Fast R-CNN) runs in NumPy/OpenCV outside JAX and is timed by the caller;
                 none for the dense detectors (sliding window, SSD, YOLOv3)
    features     the backbone on the whole image (every pyramid scale for the sliding window; for R-CNN
                 the CNN on every warped region, which is the whole point of its cost)
    heads        the per-region / per-window / per-location heads: RoI pooling + box head (Fast and
                 Faster R-CNN), the window classifiers (sliding window), the dense heads (SSD, YOLOv3),
                 the SVMs and box regressors (R-CNN)
    postprocess  decoding, score threshold, class-aware NMS, top-k (vision_jax.ops.multiclass_detections)

    parts, whole = detector_parts(model, variables, images, image_sizes, proposals)
    {name: call() for name, call in parts.items()}; whole() = the contract's inference in one jit

Each part's call takes the previous part's outputs, computed once beforehand, so a timed call runs only
that part; `whole` is the detector contract's inference (models/detector.py) jitted as one function, the
reference the parts should add up to (minus what one jit fuses across their boundaries, plus dispatch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.rcnn import box_head as roi_box_head
from vision_jax.models.rcnn.fast_rcnn import FastRCNN
from vision_jax.models.rcnn.faster_rcnn import TwoStageDetector
from vision_jax.models.rcnn.sliding_window import SlidingWindowDetector
from vision_jax.models.ssd.model import SSD
from vision_jax.models.yolo.v3 import FEATURES as YOLOV3_FEATURES
from vision_jax.models.yolo.v3 import YOLOv3

PARTS = ("proposals", "features", "heads", "postprocess")


def _method(model, function: Callable) -> Callable:
    """jit(variables, *args -> model.apply(variables, *args, method=function)) (inference: no mutation)."""
    return jax.jit(lambda variables, *args: model.apply(variables, *args, method=function))


def _roi_postprocess(module, logits, deltas, boxes, valid, image_sizes):
    """box_head.detect per image with the module's test settings (what FastRCNN.detect and
    TwoStageDetector.detect_from_proposals run after their box head)."""
    s = module.settings
    post_process = functools.partial(roi_box_head.detect, score_threshold=s.test_score_threshold,
                                     nms_threshold=s.test_nms_threshold, max_detections=s.test_max_detections)
    return jax.vmap(post_process)(logits, deltas, boxes, valid, image_sizes)


def _sliding_window(model):
    return {
        "features": lambda m, images: m.pyramid_features(images, False),
        "heads": lambda m, features, images: m.window_outputs(features, images.shape[1:3]),
        "postprocess": lambda m, outputs, images, sizes: m.detect(outputs, images, sizes),
    }


def _ssd(model):
    def heads(m, feature_maps, images):
        logits, deltas = m.head(feature_maps)
        return {"logits": logits, "deltas": deltas, "default_boxes": m.default_boxes(feature_maps, images.shape[1:3])}

    return {
        "features": lambda m, images: m.features(images, False),
        "heads": heads,
        "postprocess": lambda m, outputs, images, sizes: m.detect(outputs, images, sizes),
    }


def _yolov3(model):
    def heads(m, features, images):
        return [out.astype(jnp.float32) for out in m.head([features[name] for name in YOLOV3_FEATURES], False)]

    return {
        "features": lambda m, images: m.backbone(images, train=False),
        "heads": heads,
        "postprocess": lambda m, outputs, images, sizes: m.detect(outputs, images, sizes),
    }


def detector_parts(model, variables, images: jax.Array, image_sizes: jax.Array,
                   proposals: dict | None = None) -> tuple[dict[str, Callable[[], object]], Callable[[], object]]:
    """({part: zero-argument call}, whole call) for one batch of one detector (module docstring).

    model: a SlidingWindowDetector, FastRCNN, TwoStageDetector (Faster R-CNN; Mask R-CNN's mask head is not
    split out), SSD or YOLOv3; images float32 [B, H, W, 3]; image_sizes float32 [B, 2]; proposals: the given
    proposals {'proposals' [B, P, 4], 'proposal_valid' [B, P]} (Fast R-CNN only). The calls' results are
    JAX arrays (block on them to time). A part a family does not have is absent ('proposals' of a dense
    detector; Fast R-CNN's, which is selective search outside JAX).
    """
    images = jnp.asarray(images)
    image_sizes = jnp.asarray(image_sizes, jnp.float32)
    given = None if proposals is None else {k: jnp.asarray(v) for k, v in proposals.items()}
    whole_fn = jax.jit(lambda v, x, s, t: model.apply(v, x, s, t, train=False))
    whole = lambda: whole_fn(variables, images, image_sizes, given)
    forward = lambda m, x: m.forward(x, False)
    if isinstance(model, FastRCNN):
        if given is None:
            raise ValueError("Fast R-CNN's parts need the given proposals {'proposals', 'proposal_valid'}")
        features_fn = _method(model, forward)
        heads_fn = _method(model, lambda m, feature, boxes: m.box_outputs(feature, boxes))
        post_fn = _method(model, _roi_postprocess)
        feature = features_fn(variables, images)
        boxes, valid = given["proposals"].astype(jnp.float32), given["proposal_valid"].astype(bool)
        logits, deltas = heads_fn(variables, feature, boxes)
        parts = {
            "features": lambda: features_fn(variables, images),
            "heads": lambda: heads_fn(variables, feature, boxes),
            "postprocess": lambda: post_fn(variables, logits, deltas, boxes, valid, image_sizes),
        }
        return parts, whole
    if isinstance(model, TwoStageDetector):
        features_fn = _method(model, forward)
        proposals_fn = _method(model, lambda m, features, sizes: m.proposals(features, sizes, False))
        heads_fn = _method(model, lambda m, features, boxes: m.box_outputs(features, boxes, False))
        post_fn = _method(model, _roi_postprocess)
        features = features_fn(variables, images)
        boxes, _, valid = proposals_fn(variables, features, image_sizes)
        logits, deltas = heads_fn(variables, features, boxes)
        parts = {
            "proposals": lambda: proposals_fn(variables, features, image_sizes),
            "features": lambda: features_fn(variables, images),
            "heads": lambda: heads_fn(variables, features, boxes),
            "postprocess": lambda: post_fn(variables, logits, deltas, boxes, valid, image_sizes),
        }
        return parts, whole
    family = (_sliding_window if isinstance(model, SlidingWindowDetector) else _ssd if isinstance(model, SSD)
              else _yolov3 if isinstance(model, YOLOv3) else None)  # fmt: skip
    if family is None:
        raise ValueError(f"no inference parts for {type(model).__name__}: add its family to scripts/inference_parts.py")
    methods = family(model)
    features_fn, heads_fn, post_fn = (_method(model, methods[k]) for k in ("features", "heads", "postprocess"))
    features = features_fn(variables, images)
    outputs = heads_fn(variables, features, images)
    parts = {
        "features": lambda: features_fn(variables, images),
        "heads": lambda: heads_fn(variables, features, images),
        "postprocess": lambda: post_fn(variables, outputs, images, image_sizes),
    }
    return parts, whole


def rcnn_parts(model, variables, settings, images: jax.Array, image_sizes: jax.Array, regions, heads: dict,
               variant) -> tuple[dict[str, Callable[[], object]], Callable[[], object]]:
    """The same split for R-CNN (a staged model, not one module): 'features' = warp every region and run
    the CNN on it (rcnn_regions.region_outputs), 'heads' = SVM scores and box regressors
    (rcnn_inference.score_regions), 'postprocess' = per-class NMS (rcnn_inference.postprocess); whole = the
    three in a row, as rcnn_evaluation.evaluate_detector runs them. regions: rcnn_regions.BatchRegions of the
    images' proposals; heads: rcnn_inference.heads_for's arrays; variant: rcnn_inference.Variant.

    Unlike evaluate_detector (regions_per_call regions per call, the last call padded), the CNN here runs the
    image's regions padded to a multiple of 64 in one call: at batch 1 the configured 1024 would charge one
    image for ~10x the regions it has.
    """
    from vision_jax.models.rcnn.rcnn_inference import postprocess, score_regions
    from vision_jax.models.rcnn.rcnn_regions import make_region_forward, region_outputs

    count = len(regions.boxes)
    per_call = max(64, -(-count // 64) * 64)
    forward = make_region_forward(model, settings)
    batch, num_slots = images.shape[0], int(np.max(regions.slot, initial=0)) + 1
    pad = lambda x: np.concatenate([x, np.zeros((per_call - count, *x.shape[1:]), x.dtype)])

    def features():
        return region_outputs(forward, variables, images, image_sizes, regions, per_call)

    def score(outputs):
        scores, class_boxes = score_regions({k: jnp.asarray(pad(v)) for k, v in outputs.items()},
                                            jnp.asarray(pad(regions.boxes)), heads, variant.scorer,
                                            variant.box_regression)  # fmt: skip
        return np.asarray(scores)[:count], np.asarray(class_boxes)[:count]

    def post(scores, class_boxes):
        return postprocess(regions, scores, class_boxes, batch, num_slots, np.asarray(image_sizes), settings)

    outputs = features()
    scored = score(outputs)
    parts = {"features": features, "heads": lambda: score(outputs), "postprocess": lambda: post(*scored)}
    return parts, lambda: post(*score(features()))

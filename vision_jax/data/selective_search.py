"""Selective search (Uijlings et al., IJCV 2013) through OpenCV contrib, with R-CNN's "fast" settings.

    from vision_jax.data.selective_search import selective_search
    boxes = selective_search(image_rgb_uint8)      # float32 [P, 4] (x1, y1, x2, y2), original pixels

API
---
`selective_search(image, *, strategy='fast', max_proposals=2000, min_box_side=None, max_width=500)`
  image: uint8 [H, W, 3] RGB (grayscale [H, W] is tiled). Returns float32 [P, 4], 0 <= P <=
  max_proposals, (x1, y1, x2, y2) in pixels of the given image (a box covers whole pixels: a region
  of columns x..x+w-1 is the box [x, x + w]), without duplicates, sorted by (y1, x1, y2, x2). P = 0
  can happen (every box smaller than the minimum side): the caller decides (proposals.py uses the
  whole image and counts it).
`require_ximgproc()` returns `cv2.ximgproc.segmentation`, or raises `MissingOpenCVContribError`
  naming the wheel to install.

Strategies
----------
* 'fast' (default): the paper's "Selective Search Fast" as R-CNN ran it (rcnn/selective_search_boxes.m):
  colour spaces HSV and Lab; Felzenszwalb-Huttenlocher graph segmentation with k in {50, 100},
  sigma 0.8 and a minimum segment size of k pixels (Uijlings' code sets minSize = k); two similarity
  combinations, colour + texture + size + fill and texture + size + fill: 2 x 2 x 2 = 8 hierarchical
  groupings whose boxes are pooled.
* 'opencv_fast': OpenCV's own `switchToSelectiveSearchFast()`, which differs from the paper: k in
  {150, 300, 450} (base_k=150, inc_k=150), OpenCV's default minimum segment size (100 px), and the
  same two similarity combinations: 2 x 3 x 2 = 12 groupings.
* 'opencv_quality': OpenCV's `switchToSelectiveSearchQuality()` (5 colour spaces, 5 k, 4 strategies).

Image size. As R-CNN's fast mode, an image wider than `max_width` (500) is resized to that width for
the segmentation and the boxes are scaled back (None = never resize).

Small boxes. R-CNN drops boxes whose width or height is below 20 px on its (at most) 500-px-wide
images. The minimum side here is scaled with the width used for the segmentation:
`min_box_side = 20 * min(W, max_width) / 500` (about 5 px on the 128-px shapes scenes), unless given.

Order and cap. OpenCV ranks regions by `rand() * hierarchy level` with the C library's unseeded
`rand()`, so its output order differs between runs and the hierarchy rank is not exposed. The *set*
of boxes does not depend on that order, so this module sorts it by (y1, x1, y2, x2) to make every run
identical. When more than `max_proposals` boxes remain, a subset of `max_proposals` is kept, drawn
uniformly at random with a fixed seed (the paper's ranking is itself randomised; without the
hierarchy level, a uniform draw keeps small and large boxes in proportion), then sorted again.

Installing. OpenCV's Python wheels all install the one `cv2` package: `opencv-python`,
`opencv-python-headless` and `opencv-contrib-python` conflict with `opencv-contrib-python-headless`,
the only one this project needs (it has `cv2.ximgproc`); install it alone.

This module imports only NumPy and OpenCV, so that proposal workers (proposals.py) start quickly.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("fast", "opencv_fast", "opencv_quality")
RCNN_MIN_BOX_SIDE = 20.0  # R-CNN's minBoxWidth, at its 500-px image width
RCNN_IMAGE_WIDTH = 500  # R-CNN's fast mode segments images at most this wide
PAPER_FAST_KS = (50, 100)
PAPER_SIGMA = 0.8
DEFAULT_MAX_PROPOSALS = 2000
CAP_SEED = 0


class MissingOpenCVContribError(ImportError):
    """OpenCV is missing, or installed without the contrib module `ximgproc`."""


def require_ximgproc():
    """`cv2.ximgproc.segmentation`, or MissingOpenCVContribError saying which wheel to install."""
    advice = (
        "selective search needs OpenCV's contrib module cv2.ximgproc: `pip uninstall -y opencv-python "
        "opencv-python-headless opencv-contrib-python` (they share the cv2 package and shadow each other), "
        "then `pip install opencv-contrib-python-headless`"
    )
    try:
        import cv2
    except ImportError as error:
        raise MissingOpenCVContribError(f"OpenCV is not installed ({error}); {advice}") from error
    segmentation = getattr(getattr(cv2, "ximgproc", None), "segmentation", None)
    if segmentation is None:
        raise MissingOpenCVContribError(f"cv2 {getattr(cv2, '__version__', '?')} at {getattr(cv2, '__file__', '?')} "
                                        f"has no ximgproc; {advice}")
    return segmentation


def default_min_box_side(width: int, max_width: int | None = RCNN_IMAGE_WIDTH) -> float:
    """R-CNN's 20 px minimum box side scaled to the width the segmentation sees (module docstring)."""
    seen = width if max_width is None else min(width, max_width)
    return RCNN_MIN_BOX_SIDE * seen / RCNN_IMAGE_WIDTH


def _configure(search, image_bgr: np.ndarray, strategy: str) -> None:
    import cv2

    ss = require_ximgproc()
    if strategy == "opencv_fast":
        search.setBaseImage(image_bgr)
        search.switchToSelectiveSearchFast()
        return
    if strategy == "opencv_quality":
        search.setBaseImage(image_bgr)
        search.switchToSelectiveSearchQuality()
        return
    search.addImage(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV))
    search.addImage(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2Lab))
    for k in PAPER_FAST_KS:
        search.addGraphSegmentation(ss.createGraphSegmentation(PAPER_SIGMA, float(k), k))
    search.addStrategy(ss.createSelectiveSearchSegmentationStrategyMultiple(
        ss.createSelectiveSearchSegmentationStrategyColor(), ss.createSelectiveSearchSegmentationStrategyTexture(),
        ss.createSelectiveSearchSegmentationStrategySize(), ss.createSelectiveSearchSegmentationStrategyFill()))
    search.addStrategy(ss.createSelectiveSearchSegmentationStrategyMultiple(
        ss.createSelectiveSearchSegmentationStrategyTexture(), ss.createSelectiveSearchSegmentationStrategySize(),
        ss.createSelectiveSearchSegmentationStrategyFill()))


def canonical_boxes(boxes: np.ndarray, max_proposals: int, seed: int = CAP_SEED) -> np.ndarray:
    """Unique rows of boxes [N, 4] sorted by (y1, x1, y2, x2); above max_proposals, a uniform random
    subset (fixed seed) of that many, sorted the same way. float32 [P, 4]."""
    boxes = np.unique(np.asarray(boxes, np.float32).reshape(-1, 4), axis=0)
    order = np.lexsort((boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1]))  # last key = primary: y1
    boxes = boxes[order]
    if len(boxes) > max_proposals:
        keep = np.sort(np.random.default_rng(seed).choice(len(boxes), max_proposals, replace=False))
        boxes = boxes[keep]
    return boxes


def selective_search(
    image: np.ndarray,
    *,
    strategy: str = "fast",
    max_proposals: int = DEFAULT_MAX_PROPOSALS,
    min_box_side: float | None = None,
    max_width: int | None = RCNN_IMAGE_WIDTH,
) -> np.ndarray:
    """Selective-search boxes of one image (module docstring): float32 [P, 4] (x1, y1, x2, y2) in
    pixels of `image` (uint8 [H, W, 3] RGB or [H, W]), P <= max_proposals, sorted by (y1, x1, y2, x2).

    Raises ValueError for an unknown strategy, a bad image or max_proposals < 1;
    MissingOpenCVContribError without OpenCV contrib.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"selective search strategy={strategy!r} is not one of {STRATEGIES}")
    if max_proposals < 1:
        raise ValueError(f"max_proposals={max_proposals} must be >= 1")
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"selective search needs a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
    ss = require_ximgproc()
    import cv2

    height, width = image.shape[:2]
    scale = 1.0
    if max_width is not None and width > max_width:
        scale = max_width / width
        image = cv2.resize(image, (max_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    search = ss.createSelectiveSearchSegmentation()
    _configure(search, np.ascontiguousarray(image[:, :, ::-1]), strategy)  # OpenCV wants BGR
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # (x, y, w, h), in random order
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / scale
    boxes = np.minimum(boxes, np.asarray([width, height, width, height], np.float32))
    min_side = default_min_box_side(width, max_width) if min_box_side is None else float(min_box_side)
    sides = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(sides >= min_side).all(axis=1)]
    return canonical_boxes(boxes, max_proposals)

"""Times vision_jax.ops beside a peer implementation measured in the same run; prints a table.

    python scripts/benchmark_ops.py [--repeats 30] [--skip_roi]

Rows: ``nms`` at 1k/5k/20k RPN-like boxes (max_output_size 1000, IoU 0.7) vs
``tf.image.non_max_suppression`` (TensorFlow's CPU kernel); ``box_iou`` 2000x2000 vs NumPy; and,
when ``scripts/benchmark_roi.py`` exists, its ``roi_rows()``. Our times are medians of jitted
calls after compilation, each ended by ``block_until_ready``; the peer's are medians of calls
that end with the result in host memory. Ours and the peer's calls alternate, so background
load hits both alike. ratio = ours / peer (< 1 means faster than the peer).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vision_jax.ops.boxes import box_iou  # noqa: E402
from vision_jax.ops.nms import nms  # noqa: E402

NMS_SIZES = (1000, 5000, 20000)
NMS_MAX_OUTPUT = 1000
NMS_IOU = 0.7
IOU_SIZE = 2000


def rpn_like_boxes(rng: np.random.Generator, num_boxes: int, image_size: float = 800.0):
    """Proposals clustered around 50 objects (as an RPN's are) with uniform scores."""
    num_objects = 50
    centres = rng.uniform(0, image_size, (num_objects, 2))
    sizes = rng.uniform(20, 300, (num_objects, 2))
    which = rng.integers(0, num_objects, num_boxes)
    centre = centres[which] + rng.normal(0, 0.15, (num_boxes, 2)) * sizes[which]
    size = sizes[which] * np.exp(rng.normal(0, 0.2, (num_boxes, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1).clip(0, image_size)
    return boxes.astype(np.float32), rng.uniform(size=num_boxes).astype(np.float32)


def alternate_medians(ours, peer, repeats: int):
    """Median seconds of ours() and peer(), called alternately after one warm-up call each."""
    ours()
    peer()
    ours_times, peer_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer()
        peer_times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(peer_times)


def nms_rows(repeats: int, rng: np.random.Generator):
    import tensorflow as tf  # peer only; vision_jax itself never imports TensorFlow

    jitted = jax.jit(lambda b, s: nms(b, s, NMS_IOU, max_output_size=NMS_MAX_OUTPUT))
    rows = []
    for num_boxes in NMS_SIZES:
        boxes, scores = rpn_like_boxes(rng, num_boxes)
        boxes_jax, scores_jax = jnp.asarray(boxes), jnp.asarray(scores)
        boxes_tf = tf.constant(boxes[:, [1, 0, 3, 2]])  # TF wants (y1, x1, y2, x2)
        scores_tf = tf.constant(scores)
        indices, num_valid = jitted(boxes_jax, scores_jax)
        reference = tf.image.non_max_suppression(boxes_tf, scores_tf, NMS_MAX_OUTPUT, NMS_IOU).numpy()
        if not np.array_equal(np.asarray(indices)[: int(num_valid)], reference):
            raise RuntimeError(f"nms disagrees with TensorFlow at {num_boxes} boxes")
        ours, peer = alternate_medians(
            lambda: jax.block_until_ready(jitted(boxes_jax, scores_jax)),
            lambda: tf.image.non_max_suppression(boxes_tf, scores_tf, NMS_MAX_OUTPUT, NMS_IOU).numpy(),
            repeats)
        rows.append(("nms", f"{num_boxes} boxes ({int(num_valid)} kept)", ours * 1e3,
                     "tf.image.non_max_suppression", peer * 1e3))
    return rows


def numpy_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """The usual vectorised float32 NumPy pairwise IoU (as in many detection codebases)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def box_iou_rows(repeats: int, rng: np.random.Generator):
    boxes1, _ = rpn_like_boxes(rng, IOU_SIZE)
    boxes2, _ = rpn_like_boxes(rng, IOU_SIZE)
    jitted = jax.jit(box_iou)
    b1, b2 = jnp.asarray(boxes1), jnp.asarray(boxes2)
    np.testing.assert_allclose(np.asarray(jitted(b1, b2)), numpy_box_iou(boxes1, boxes2), atol=1e-5)
    ours, peer = alternate_medians(lambda: jax.block_until_ready(jitted(b1, b2)),
                                   lambda: numpy_box_iou(boxes1, boxes2), repeats)
    return [("box_iou", f"{IOU_SIZE}x{IOU_SIZE}", ours * 1e3, "numpy (float32, vectorised)", peer * 1e3)]


def roi_rows_if_present():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark_roi.py")
    if not os.path.exists(path):
        return []
    spec = importlib.util.spec_from_file_location("benchmark_roi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.roi_rows())


def format_table(rows) -> str:
    header = ("op", "size", "ours ms", "peer", "peer ms", "ratio")
    lines = [[op, size, f"{ours:.3f}", peer_name, f"{peer:.3f}", f"{ours / peer:.2f}x"]
             for op, size, ours, peer_name, peer in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    render = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(header), separator] + [render(line) for line in lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per row (median)")
    parser.add_argument("--skip_roi", action="store_true", help="omit benchmark_roi.py's rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random boxes")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = nms_rows(args.repeats, rng) + box_iou_rows(args.repeats, rng)
    if not args.skip_roi:
        rows += roi_rows_if_present()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
          f"median of {args.repeats}")
    print(format_table(rows))


if __name__ == "__main__":
    main()

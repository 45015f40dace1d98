"""Benchmark vision_jax.ops.roi_align against ONNX Runtime's RoiAlign, measured in the same run.

    python scripts/benchmark_roi.py [--repeats 15]

Both get the same features ([2, 50, 50, 256], an 800x800 image at stride 16), the same RoIs
(proposal-like boxes, 16..400 px) and the same settings (7x7, sampling_ratio 2, aligned /
half_pixel). ONNX Runtime gets its own NCHW copy of the features and its default intra-op
thread count; ours is jitted, compiled before timing, and timed to block_until_ready. The two
are timed alternately so that both see the same machine load; medians are reported.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from vision_jax.ops.roi import roi_align

FEATURE_SHAPE = (2, 50, 50, 256)  # [B, H, W, C]
STRIDE = 16
OUTPUT_SIZE = (7, 7)
SAMPLING_RATIO = 2
ROI_COUNTS = (512, 2000)


def _onnxruntime_roi_align():
    """A callable running ONNX RoiAlign (opset 16, half_pixel, avg) on NCHW float32."""
    import onnxruntime
    from onnx import TensorProto, helper

    node = helper.make_node(
        "RoiAlign",
        ["X", "rois", "batch_indices"],
        ["Y"],
        mode="avg",
        output_height=OUTPUT_SIZE[0],
        output_width=OUTPUT_SIZE[1],
        sampling_ratio=SAMPLING_RATIO,
        spatial_scale=1.0 / STRIDE,
        coordinate_transformation_mode="half_pixel",
    )
    graph = helper.make_graph(
        [node],
        "roi_align",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", "C", "H", "W"]),
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 4]),
            helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["K", "C", *OUTPUT_SIZE])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8  # onnx may write an IR version newer than onnxruntime reads
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def _proposals(rng: np.random.Generator, count: int, image_size: float) -> np.ndarray:
    """float32 [count, 4] xyxy boxes of 16..400 px, mostly inside the image."""
    size = np.exp(rng.uniform(np.log(16), np.log(400), (count, 2)))
    corner = rng.uniform(-0.05, 1.0, (count, 2)) * image_size - size / 2
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def roi_rows(repeats: int = 15, seed: int = 0) -> list[tuple[str, str, float, str, float]]:
    """Rows (op, size, ours_ms, peer_name, peer_ms): median jitted roi_align vs ONNX Runtime."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal(FEATURE_SHAPE).astype(np.float32)
    features_nchw = np.ascontiguousarray(features.transpose(0, 3, 1, 2))
    image_size = FEATURE_SHAPE[1] * STRIDE
    peer = _onnxruntime_roi_align()
    ours = jax.jit(lambda f, b, i: roi_align(f, b, i, OUTPUT_SIZE, 1.0 / STRIDE, SAMPLING_RATIO, aligned=True))
    rows = []
    for count in ROI_COUNTS:
        boxes = _proposals(rng, count, image_size)
        box_indices = rng.integers(0, FEATURE_SHAPE[0], count).astype(np.int32)
        feed = {"X": features_nchw, "rois": boxes, "batch_indices": box_indices.astype(np.int64)}
        args = [jax.device_put(a) for a in (features, boxes, box_indices)]
        expected = peer(feed)
        got = np.asarray(jax.block_until_ready(ours(*args)))  # compiles
        error = float(np.abs(got.transpose(0, 3, 1, 2) - expected).max())
        if error > 1e-4:
            raise AssertionError(f"roi_align differs from ONNX Runtime by {error} at {count} RoIs")
        ours_times, peer_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(ours(*args))
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            peer(feed)
            peer_times.append(time.perf_counter() - start)
        size = (
            f"{count} RoIs, {'x'.join(map(str, FEATURE_SHAPE))} NHWC, "
            f"{OUTPUT_SIZE[0]}x{OUTPUT_SIZE[1]}, s={SAMPLING_RATIO}"
        )
        rows.append(
            (
                "roi_align",
                size,
                1e3 * float(np.median(ours_times)),
                "onnxruntime RoiAlign",
                1e3 * float(np.median(peer_times)),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"{'op':<10} {'size':<44} {'ours ms':>9} {'peer':<22} {'peer ms':>9} {'ratio':>6}")
    for op, size, ours_ms, peer_name, peer_ms in roi_rows(args.repeats):
        print(f"{op:<10} {size:<44} {ours_ms:>9.1f} {peer_name:<22} {peer_ms:>9.1f} {ours_ms / peer_ms:>5.2f}x")


if __name__ == "__main__":
    main()

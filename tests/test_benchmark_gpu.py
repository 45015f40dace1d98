"""scripts/benchmark_gpu.py at --tiny sizes on whatever device is here (the CPU in this project): the rows'
schema, XLA's flop count against ResNet-50's convolutions counted by hand, and the peak-FLOP/s table
against NVIDIA's datasheets."""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import benchmark_gpu  # noqa: E402
import benchmark_resnet50  # noqa: E402


@pytest.mark.parametrize(
    "device_kind,dtype,tflops",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989.0),
        ("NVIDIA H100 PCIe", "bfloat16", 756.0),
        ("NVIDIA H200", "float32", 495.0),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
        ("NVIDIA A100-PCIE-40GB", "float32", 156.0),
        ("NVIDIA A10", "bfloat16", 125.0),
        ("NVIDIA L40S", "bfloat16", 362.0),
        ("NVIDIA L4", "float32", 60.0),
        ("Tesla V100-SXM2-16GB", "bfloat16", 15.7),
        ("Tesla T4", "float32", 8.1),
        ("cpu", "float32", None),
    ],
)
def test_peak_tflops_by_device_name_match_the_datasheets(device_kind, dtype, tflops):
    assert benchmark_gpu.peak_tflops(device_kind, dtype) == tflops


def test_tiny_resnet50_row_has_the_schema_and_xla_counts_the_convolutions():
    """One float32 row of the tiny ResNet-50 (width 8, 64², per-device batch 2). A train step does the
    forward convolutions once and their gradients (input and kernel: twice the forward) once more, so XLA's
    count must be about 3x the hand count of the forward convolutions, plus the (small) rest."""
    row = benchmark_gpu.measure("resnet50", "float32", devices=8, steps=1, tiny=True)
    assert set(benchmark_gpu.ROW_KEYS) <= set(row)
    assert row["tiny"] and row["dtype"] == "float32" and row["image_size"] == 64 and row["global_batch"] == 2
    assert row["images_per_s"] > 0 and math.isclose(row["images_per_s"], row["global_batch"] / row["step_seconds"])
    assert math.isfinite(row["loss"])
    if row["peak_tflop_per_s"] is None:  # CPU, or a GPU the table lacks
        assert row["mfu"] is None
    else:
        assert math.isclose(row["mfu"], row["achieved_tflop_per_s"] / row["peak_tflop_per_s"])
    forward_gflop = sum(c["count"] * benchmark_resnet50.conv_flops(c, 2) for c in benchmark_resnet50.resnet50_convolutions(64, 8)) / 1e9
    stem_input_grad = benchmark_resnet50.conv_flops(benchmark_resnet50.resnet50_convolutions(64, 8)[0], 2) / 1e9
    convolutions = 3 * forward_gflop - stem_input_grad  # the image needs no gradient
    assert convolutions < row["gflop_per_step"] < 1.5 * convolutions, (row["gflop_per_step"], convolutions)

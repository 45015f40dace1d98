"""scripts/lineage_full_size.py: R-CNN against Fast R-CNN on the full-size VOC configs (issue 11's 10x).

* XLA's FLOP count of the configs' inference against VGG-16 counted by hand from its published layout
  (13 3x3 convolutions; a 'same'-padded tap outside the image multiplies a zero and XLA does not count it,
  so the count per layer is Cin x Cout x (3n - 2)^2 for an n x n map), fc6 25088 -> 4096, fc7, the
  classifier (and Fast R-CNN's box regressor): one R-CNN region (224 px warp) and one Fast R-CNN image
  (1008 px canvas, 2000 RoI slots). From those counts R-CNN does >= 10x Fast R-CNN's arithmetic for any
  image with more than a few hundred proposals (VOC's selective search gives ~2000).
* The script end to end on generated photos with the small shapes configs: the proposal counts are
  selective search's, R-CNN's CNN calls and FLOPs follow the regions, and the ratios are the totals'.
"""

from __future__ import annotations

import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import lineage_full_size  # noqa: E402

from vision_jax.data.selective_search import selective_search  # noqa: E402
from vision_jax.models.rcnn.rcnn_regions import make_region_forward  # noqa: E402
from vision_jax.models.rcnn.region_cnn import rcnn_settings_from_config  # noqa: E402

# VGG-16's 13 convolutions: (input channels, output channels, stage); stage s runs at side / 2^s.
VGG16_CONVS = [(3, 64, 0), (64, 64, 0), (64, 128, 1), (128, 128, 1), (128, 256, 2), (256, 256, 2), (256, 256, 2),
               (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 4), (512, 512, 4), (512, 512, 4)]  # fmt: skip


def vgg16_conv_flops(side: int) -> float:
    """2 x multiply-adds of VGG-16's convolutions on a side x side image, taps inside the map only."""
    total = 0.0
    for c_in, c_out, stage in VGG16_CONVS:
        n = math.ceil(side / 2**stage)
        total += 2.0 * c_in * c_out * (3 * n - 2) ** 2
    return total


def head_flops(num_classes: int, box_regression: bool) -> float:
    """2 x multiply-adds of pool5 (7 x 7 x 512) -> fc6 4096 -> fc7 4096 -> classifier (+ box deltas)."""
    outputs = (num_classes + 1) * (5 if box_regression else 1)
    return 2.0 * (7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * outputs)


@pytest.fixture(scope="module")
def full_size():
    return {name: lineage_full_size.build(path, 0) for name, path in
            (("rcnn", lineage_full_size.RCNN_CONFIG), ("fast_rcnn", lineage_full_size.FAST_RCNN_CONFIG))}  # fmt: skip


def test_xla_flops_match_vgg16_by_hand_and_rcnn_does_over_10x(full_size, rng):
    config, model, variables = full_size["rcnn"]
    forward = make_region_forward(model, rcnn_settings_from_config(config))
    canvas = int(config.data.image_size)
    box = np.sort(rng.uniform(0, canvas, size=(1, 2, 2)), axis=1).reshape(1, 4)[:, [0, 2, 1, 3]]
    lowered = forward.lower(variables, jnp.zeros((1, canvas, canvas, 3)), jnp.asarray([[canvas, canvas]], jnp.float32),
                            jnp.zeros(1, jnp.int32), jnp.asarray(box, jnp.float32))  # fmt: skip
    per_region = lowered.cost_analysis()["flops"]
    by_hand = vgg16_conv_flops(config.model.rcnn.crop_size) + head_flops(20, box_regression=False)
    print(f"R-CNN per region: XLA {per_region / 1e9:.2f} GFLOP, by hand {by_hand / 1e9:.2f}")
    assert per_region == pytest.approx(by_hand, rel=0.01)

    config, model, variables = full_size["fast_rcnn"]
    side, slots = int(config.data.image_size), int(config.data.max_proposals)
    given = {"proposals": jnp.zeros((1, slots, 4)), "proposal_valid": jnp.ones((1, slots), bool)}
    one_jit = jax.jit(lambda v, x, s, t: model.apply(v, x, s, t, train=False))
    lowered = one_jit.lower(variables, jnp.zeros((1, side, side, 3)), jnp.asarray([[side, side]], jnp.float32), given)
    per_image = lowered.cost_analysis()["flops"]
    # conv5_3 (stride 16) without pool5, then the head on every RoI slot.
    by_hand = vgg16_conv_flops(side) + slots * head_flops(20, box_regression=True)
    print(f"Fast R-CNN per image: XLA {per_image / 1e9:.0f} GFLOP, by hand {by_hand / 1e9:.0f}")
    assert per_image == pytest.approx(by_hand, rel=0.03)  # + RoI pooling, softmax, decoding and NMS

    proposals = int(rng.integers(1000, 2001))  # selective search 'fast' on VOC: ~1500-2000 per image
    ratio = proposals * per_region / per_image
    print(f"{proposals} proposals: R-CNN / Fast R-CNN = {ratio:.0f}x the FLOPs")
    assert ratio >= 10


def test_script_on_shapes_configs(tmp_path, rng):
    photos = tmp_path / "photos"
    photos.mkdir()
    images = []
    for i in range(2):  # blocks of colour on noise: selective search finds regions in them
        image = rng.integers(0, 60, size=(int(rng.integers(90, 140)), int(rng.integers(90, 140)), 3), dtype=np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 60, size=2)
            image[y : y + 30, x : x + 30] = rng.integers(100, 256, size=3)
        Image.fromarray(image).save(photos / f"{i}.png")
        images.append(image)
    out = tmp_path / "rows.json"
    per_call = 8
    argv = ["lineage_full_size.py", "--images", str(photos), "--rcnn_regions", str(per_call), "--regions_per_call",
            str(per_call), "--json", str(out), "--fast_rcnn_config", "configs/detection/shapes_fast_rcnn.py",
            "--rcnn_config", "configs/detection/shapes_rcnn.py"]  # fmt: skip
    old = sys.argv
    try:
        sys.argv = argv
        lineage_full_size.main()
    finally:
        sys.argv = old
    rows = json.loads(out.read_text())["rows"]
    assert [row["photo"] for row in rows] == ["0.png", "1.png"]
    for row, image in zip(rows, images):
        assert row["proposals"] == len(selective_search(image, strategy="fast", max_proposals=384))
        rcnn = row["rcnn"]
        assert rcnn["regions"] == row["proposals"] and rcnn["regions_run"] == min(per_call, row["proposals"])
        assert rcnn["calls"] == math.ceil(row["proposals"] / per_call) and rcnn["calls_run"] == 1
        for name in ("rcnn", "fast_rcnn"):
            assert row[name]["total_seconds"] == pytest.approx(sum(row[name]["seconds"].values()))
            assert all(seconds > 0 for seconds in row[name]["seconds"].values())
        assert row["ratio_without_proposals"] == pytest.approx(rcnn["total_seconds"] / row["fast_rcnn"]["total_seconds"])
        assert row["flop_ratio"] == pytest.approx(rcnn["gflop"] / row["fast_rcnn"]["gflop"])
    # R-CNN's FLOPs are per call: the photo with more calls costs proportionally more.
    per_call_gflop = [row["rcnn"]["gflop"] / row["rcnn"]["calls"] for row in rows]
    assert per_call_gflop[0] == pytest.approx(per_call_gflop[1], rel=1e-6)

"""FCN forward pass against the sliding-window baseline on the same image, jitted, median times.

    python scripts/benchmark_segmentation.py [--image_size 128] [--backbone resnet18 --width 16]
        [--patch_size 32] [--chunk_size 1024] [--repeats 5] [--baseline_repeats 3]

Both methods use the same backbone (same module, same width). The FCN (FCN-8s, as in
configs/segmentation/shapes_fcn8s.py) labels all H x W pixels in one forward pass of the whole image;
the baseline classifies the centre pixel of a patch_size^2 crop around every pixel (H x W forward passes
of the patch network, `chunk_size` crops per batch). Times are medians over `repeats` runs after one
compile-and-warm-up call; the load average is printed because the CPU may be shared.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from vision_jax.models.backbones import build_backbone
from vision_jax.models.segmentation.fcn import FCN
from vision_jax.models.segmentation.settings import FCNSettings
from vision_jax.models.segmentation.sliding_window import centre_pixel_classifier, sliding_window_logits

from timing import median_seconds

flags.DEFINE_integer("image_size", 128, "Side of the square test image, pixels.")
flags.DEFINE_string("backbone", "resnet18", "Backbone of both models.")
flags.DEFINE_integer("width", 16, "Backbone width of both models.")
flags.DEFINE_integer("num_classes", 6, "Classes (shapes: background + 5).")
flags.DEFINE_integer("patch_size", 32, "Crop side of the sliding-window baseline.")
flags.DEFINE_integer("chunk_size", 1024, "Crops per batch of the sliding-window baseline.")
flags.DEFINE_integer("repeats", 5, "Timed runs of the FCN (median reported).")
flags.DEFINE_integer("baseline_repeats", 3, "Timed runs of the sliding window (median reported; each takes long).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    size, patch = FLAGS.image_size, FLAGS.patch_size
    image = jnp.asarray(np.random.default_rng(0).normal(size=(1, size, size, 3)), jnp.float32)
    backbone = build_backbone(FLAGS.backbone, width=FLAGS.width)
    key = jax.random.key(0, impl="rbg")

    fcn = FCN(backbone=backbone, num_classes=FLAGS.num_classes, variant="8s", settings=FCNSettings(head_features=0))
    fcn_vars = jax.jit(lambda k: fcn.init(k, image, train=False))(key)
    fcn_forward = jax.jit(lambda v, x: fcn.apply(v, x, train=False))

    classifier = centre_pixel_classifier(backbone, FLAGS.num_classes)
    patch_vars = jax.jit(lambda k: classifier.init(k, jnp.zeros((1, patch, patch, 3)), train=False))(key)
    sliding_forward = jax.jit(
        lambda v, x: sliding_window_logits(
            lambda crops: classifier.apply(v, crops, train=False), x, patch, FLAGS.chunk_size
        )
    )

    load_before = os.getloadavg()[0]
    fcn_out = jax.block_until_ready(fcn_forward(fcn_vars, image))  # compile + warm up
    fcn_time = median_seconds(lambda: fcn_forward(fcn_vars, image), FLAGS.repeats, warmup=False)
    sliding_out = jax.block_until_ready(sliding_forward(patch_vars, image))
    sliding_time = median_seconds(lambda: sliding_forward(patch_vars, image), FLAGS.baseline_repeats, warmup=False)
    load_after = os.getloadavg()[0]
    assert fcn_out.shape == sliding_out.shape == (1, size, size, FLAGS.num_classes)

    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))
    print(f"devices: {jax.devices()}; load average (1 min) {load_before:.1f} before, {load_after:.1f} after")
    print(
        f"one {size}x{size} image, backbone {FLAGS.backbone} width {FLAGS.width}, {FLAGS.num_classes} classes, "
        f"median of {FLAGS.repeats} (FCN) and {FLAGS.baseline_repeats} (sliding window) runs"
    )
    print("| method | forward passes | parameters | median time (ms) | pixels/s |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| FCN-8s, whole image | 1 | {count(fcn_vars):,} | {fcn_time * 1e3:.1f} | {size * size / fcn_time:,.0f} |")
    print(
        f"| sliding window, {patch}x{patch} crop per pixel | {size * size:,} | {count(patch_vars):,} | "
        f"{sliding_time * 1e3:.1f} | {size * size / sliding_time:,.0f} |"
    )
    print(f"FCN is {sliding_time / fcn_time:.0f}x faster than the sliding window on the same image")


if __name__ == "__main__":
    app.run(main)

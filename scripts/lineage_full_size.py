"""R-CNN against Fast R-CNN where the papers measured them: the full-size VOC configs (VGG-16, ~2000
selective-search proposals; R-CNN warps each to 224x224, Fast R-CNN runs VGG-16 once on a 600 px image)
timed on the same photos on this machine, with XLA's FLOP count of each.

    python scripts/lineage_full_size.py [--images DIR] [--rcnn_regions 256] [--regions_per_call 64]
        [--repeats 1] [--json PATH] [--fast_rcnn_config PATH] [--rcnn_config PATH]

On the generated shapes (128 px images, ~95 proposals, a small CNN; scripts/compare_detectors.py) R-CNN is
only ~2.4x Fast R-CNN: a warped 64 px crop is a quarter of the image, so 95 of them are ~24 images' worth of
pixels, and at that size per-call overheads weigh. The papers' gap (R-CNN 47 s per image, Fast R-CNN 0.32 s
on a K40, VGG-16, proposals excluded) comes from ~2000 crops of 224 px each against one ~600x1000 pass:
this script measures that gap with the project's own full-size configs.

Photos: every jpg/png of `--images` (default: scikit-learn's two sample photos, china.jpg and flower.jpg,
427x640 like VOC's ~500x375; they ship in the scikit-learn wheel, a core requirement). Weights are random:
the time of a forward pass does not depend on them (static shapes; R-CNN's SVMs and box regressors are random
arrays of their trained shapes; NMS sees up to 2000 boxes either way).

Per photo, at batch 1:
* proposals: selective search with the configs' settings ('fast', up to 2000 boxes), timed once; the same
  boxes go to both detectors (each config scales them by its own resize, as its input pipeline does).
* Fast R-CNN (configs/detection/fast_rcnn_vgg16_voc.py): the photo resized to short side 600 (long <= 1000)
  on the config's padded 1008x1008 canvas (what the config runs: 1.9x the pixels of the 600x899 image);
  features (VGG-16 conv5_3) / heads (RoIPool 7x7 + fc6 + fc7 + classifier on the 2000 padded RoI slots) /
  postprocess (per-class NMS), each timed as in scripts/inference_parts.py, median of `--repeats`.
* R-CNN (configs/detection/rcnn_vgg16_voc.py): the photo resized to long side 500 on the 512 canvas;
  features = every proposal warped to 224 (16 px context) and run through VGG-16 + fc6 + fc7 in calls of
  `--regions_per_call` (the calls have one static shape, so the cost is the number of calls times the cost
  of one), median of `--repeats` runs after an untimed one. With `--rcnn_regions N` > 0, the first N regions are run and timed and the CNN time is scaled by
  calls(P) / calls(N) (a ~10-minute measurement per photo otherwise; `--rcnn_regions 0` runs all P and
  checks the scaling); heads = the SVMs and box regressors on all P regions; postprocess = per-class NMS.
* GFLOP per image: XLA's cost analysis (of the lowered computation) of Fast R-CNN's inference in one jit,
  and of one R-CNN CNN call times the number of calls (heads and NMS are a rounding error for R-CNN);
  tests/detection/test_lineage_full_size.py checks both against VGG-16 counted by hand.

Prints a markdown table and the load average before and after (the machine may be shared); `--json PATH`
writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from full_size import load_average  # noqa: E402
from inference_parts import detector_parts  # noqa: E402
from timing import median_seconds  # noqa: E402

from vision_jax.data import transforms  # noqa: E402
from vision_jax.data.selective_search import selective_search  # noqa: E402
from vision_jax.models.rcnn.rcnn_inference import Variant, postprocess, score_regions  # noqa: E402
from vision_jax.models.rcnn.rcnn_regions import BatchRegions, make_region_forward, region_outputs  # noqa: E402
from vision_jax.models.rcnn.region_cnn import rcnn_settings_from_config  # noqa: E402
from vision_jax.models.table import build_model  # noqa: E402
from vision_jax.train.config import load_config_file  # noqa: E402

FAST_RCNN_CONFIG = "configs/detection/fast_rcnn_vgg16_voc.py"
RCNN_CONFIG = "configs/detection/rcnn_vgg16_voc.py"
VOC_CLASSES = 20


def photos(folder: str | None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 [H, W, 3]) of every jpg/png in `folder`, or scikit-learn's two sample photos."""
    if folder is None:
        from sklearn.datasets import load_sample_images

        bundle = load_sample_images()
        return [(os.path.basename(path), image) for path, image in zip(bundle.filenames, bundle.images)]
    from PIL import Image

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        raise ValueError(f"--images {folder!r} holds no jpg/png file")
    return [(n, np.asarray(Image.open(os.path.join(folder, n)).convert("RGB"))) for n in names]


def network_input(image: np.ndarray, boxes: np.ndarray, config) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """The photo and its proposals as the config's evaluation pipeline feeds them, through the pipeline's own
    transforms (data/transforms.py): resized to short side data.min_size with the long side at most
    data.max_size, normalised, padded at the bottom right to the data.image_size canvas. -> (images
    [1, S, S, 3], image_sizes [1, 2] (height, width), boxes [P, 4] in network-input pixels)."""
    resized, scaled, _ = transforms.resize_image_and_boxes(tf.constant(image), tf.constant(boxes),
                                                           short_side=int(config.data.min_size),
                                                           max_size=int(config.data.max_size))  # fmt: skip
    side = int(config.data.image_size)
    canvas = transforms.pad_to_size(transforms.normalize_image(resized), (side, side))
    sizes = np.asarray([resized.shape[:2]], np.float32)
    return jnp.asarray(canvas.numpy()[None]), jnp.asarray(sizes), scaled.numpy()


def time_fast_rcnn(config, model, variables, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict:
    """{'seconds': {part: s}, 'whole_seconds', 'gflop'} of Fast R-CNN on one photo with its proposals."""
    images, sizes, boxes = network_input(image, boxes, config)
    slots = int(config.data.max_proposals)
    padded = np.zeros((1, slots, 4), np.float32)
    padded[0, : len(boxes)] = boxes
    proposals = {"proposals": padded, "proposal_valid": np.arange(slots)[None] < len(boxes)}
    parts, whole = detector_parts(model, variables, images, sizes, proposals)
    seconds = {name: median_seconds(call, repeats) for name, call in parts.items()}
    given = {k: jnp.asarray(v) for k, v in proposals.items()}
    one_jit = jax.jit(lambda v, x, s, t: model.apply(v, x, s, t, train=False))
    gflop = one_jit.lower(variables, images, sizes, given).cost_analysis()["flops"] / 1e9
    return {"seconds": seconds, "whole_seconds": median_seconds(whole, repeats), "gflop": gflop}


def random_heads(outputs: dict, num_classes: int, seed: int) -> dict[str, jax.Array]:
    """SVM weights [D, C] and box regressors [C, Dp, 4] of the trained shapes, random."""
    rng = np.random.default_rng(seed)
    dim, pooled = outputs["features"].shape[1], outputs["pooled"].shape[1]
    arrays = {"svm_weights": rng.normal(size=(dim, num_classes)) * 0.01, "svm_bias": np.zeros(num_classes),
              "box_weights": rng.normal(size=(num_classes, pooled, 4)) * 1e-3, "box_biases": np.zeros((num_classes, 4))}
    return {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}


def time_rcnn(config, model, variables, image: np.ndarray, boxes: np.ndarray, args) -> dict:
    """{'seconds': {part: s}, 'gflop', 'regions', 'regions_run', 'calls'} of R-CNN on one photo
    (module docstring: the CNN timed on the first --rcnn_regions regions and scaled by the calls)."""
    settings = rcnn_settings_from_config(config)
    images, sizes, boxes = network_input(image, boxes, config)
    count, per_call = len(boxes), args.regions_per_call
    run = count if args.rcnn_regions <= 0 else min(count, args.rcnn_regions)
    calls, calls_run = -(-count // per_call), -(-run // per_call)
    regions = BatchRegions(np.zeros(count, np.int32), boxes.astype(np.float32), np.arange(count),
                           np.full(count, -1))  # fmt: skip
    subset = BatchRegions(regions.image_index[:run], regions.boxes[:run], regions.slot[:run], regions.gt_class[:run])
    forward = make_region_forward(model, settings)
    features = lambda: region_outputs(forward, variables, images, sizes, subset, per_call)
    outputs = features()  # untimed: compiles, and the first call's one-off costs stay out of the timing
    cnn_seconds = median_seconds(features, args.repeats, warmup=False) * calls / calls_run
    one_call = forward.lower(variables, images, sizes, jnp.zeros(per_call, jnp.int32), jnp.zeros((per_call, 4)))
    gflop = one_call.cost_analysis()["flops"] * calls / 1e9
    # Heads and NMS on all P regions: the subset's outputs repeated to P rows (only their shapes matter).
    outputs = {k: np.resize(v, (count, *v.shape[1:])) for k, v in outputs.items()}
    heads = random_heads(outputs, VOC_CLASSES, seed=0)
    variant = Variant(settings.test_scorer, settings.test_box_regression)

    def score():
        scores, class_boxes = score_regions({k: jnp.asarray(v) for k, v in outputs.items()},
                                            jnp.asarray(regions.boxes), heads, variant.scorer, variant.box_regression)
        return np.asarray(scores), np.asarray(class_boxes)

    scored = score()
    post = lambda: postprocess(regions, *scored, 1, count, np.asarray(sizes), settings)
    seconds = {"features": cnn_seconds, "heads": median_seconds(score, args.repeats),
               "postprocess": median_seconds(post, args.repeats)}
    return {"seconds": seconds, "gflop": gflop, "regions": count, "regions_run": run, "calls": calls,
            "calls_run": calls_run}


def build(path: str, key: int):
    """(config, model, variables) of a config (a path from the repository root or absolute) with random
    weights and VOC's 20 classes."""
    config = load_config_file(os.path.join(REPO, path))
    model = build_model(config, VOC_CLASSES)
    if config.model.name == "rcnn":
        crops = jnp.zeros((1, config.model.rcnn.crop_size, config.model.rcnn.crop_size, 3))
        variables = jax.jit(lambda k: model.init(k, crops, train=False))(jax.random.key(key))
    else:
        side = int(config.data.image_size)
        images, sizes = jnp.zeros((1, side, side, 3)), jnp.asarray([[side, side]], jnp.float32)
        slots = int(config.data.max_proposals)
        given = {"proposals": jnp.zeros((1, slots, 4)), "proposal_valid": jnp.zeros((1, slots), bool)}
        variables = jax.jit(lambda k: model.init(k, images, sizes, given, train=False))(jax.random.key(key))
    return config, model, variables


def markdown(rows: list[dict]) -> str:
    lines = ["| photo | proposals | selective search s | detector | features s | heads s | NMS s | total s "
             "(without proposals) | GFLOP | R-CNN / Fast R-CNN |", "|" + "---|" * 10]
    for row in rows:
        ratio = row["rcnn"]["total_seconds"] / row["fast_rcnn"]["total_seconds"]
        for name, label in (("rcnn", "R-CNN"), ("fast_rcnn", "Fast R-CNN")):
            d, s = row[name], row[name]["seconds"]
            lines.append(f"| {row['photo']} | {row['proposals']} | {row['selective_search_seconds']:.2f} | {label} | "
                         f"{s['features']:.2f} | {s['heads']:.3f} | {s['postprocess']:.3f} | {d['total_seconds']:.2f} | "
                         f"{d['gflop']:.4g} | {ratio:.1f}x (FLOP {row['rcnn']['gflop'] / row['fast_rcnn']['gflop']:.0f}x) |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="a folder of jpg/png photos (default: scikit-learn's sample photos)")
    parser.add_argument("--rcnn_regions", type=int, default=256, help="R-CNN regions run per photo (0 = all)")
    parser.add_argument("--regions_per_call", type=int, default=64, help="R-CNN regions per CNN call")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--fast_rcnn_config", default=FAST_RCNN_CONFIG, help="the Fast R-CNN config timed")
    parser.add_argument("--rcnn_config", default=RCNN_CONFIG, help="the R-CNN config timed")
    args = parser.parse_args()
    if args.regions_per_call < 1 or args.repeats < 1:
        parser.error("--regions_per_call and --repeats must be >= 1")
    print(f"load average before: {load_average()}; {os.cpu_count()} CPUs; jax {jax.__version__} "
          f"({jax.devices()[0].platform})", flush=True)
    fast_config, fast_model, fast_variables = build(args.fast_rcnn_config, 0)
    rcnn_config, rcnn_model, rcnn_variables = build(args.rcnn_config, 1)
    strategy, limit = fast_config.data.selective_search_strategy, int(fast_config.data.max_proposals)
    if (rcnn_config.data.selective_search_strategy, int(rcnn_config.data.max_proposals)) != (strategy, limit):
        raise ValueError("the two VOC configs disagree on selective search: the comparison needs the same proposals")
    rows = []
    for name, image in photos(args.images):
        start = time.perf_counter()
        boxes = selective_search(image, strategy=strategy, max_proposals=limit)
        search_seconds = time.perf_counter() - start
        print(f"{name} {image.shape[1]}x{image.shape[0]}: {len(boxes)} proposals in {search_seconds:.2f} s", flush=True)
        row = {"photo": name, "size": list(image.shape[:2]), "proposals": len(boxes),
               "selective_search_seconds": search_seconds}
        row["fast_rcnn"] = time_fast_rcnn(fast_config, fast_model, fast_variables, image, boxes, args.repeats)
        print(f"  Fast R-CNN {row['fast_rcnn']}; load {load_average()}", flush=True)
        row["rcnn"] = time_rcnn(rcnn_config, rcnn_model, rcnn_variables, image, boxes, args)
        print(f"  R-CNN {row['rcnn']}; load {load_average()}", flush=True)
        for name_ in ("fast_rcnn", "rcnn"):
            row[name_]["total_seconds"] = sum(row[name_]["seconds"].values())
        row["ratio_without_proposals"] = row["rcnn"]["total_seconds"] / row["fast_rcnn"]["total_seconds"]
        row["ratio_with_proposals"] = ((row["rcnn"]["total_seconds"] + search_seconds)
                                       / (row["fast_rcnn"]["total_seconds"] + search_seconds))  # fmt: skip
        row["flop_ratio"] = row["rcnn"]["gflop"] / row["fast_rcnn"]["gflop"]
        rows.append(row)
    print(markdown(rows))
    ratios = lambda key: ", ".join(f"{r[key]:.1f}x" for r in rows)
    print(f"R-CNN / Fast R-CNN per image without proposals: {ratios('ratio_without_proposals')}; with selective "
          f"search: {ratios('ratio_with_proposals')}")
    print(f"load average after: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args), "load_after": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()

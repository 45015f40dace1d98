"""Mask R-CNN read as a semantic segmenter, beside FCN-8s, on the same shapes test images.

    python scripts/semantic_from_instances.py \
        --config configs/detection/shapes_mask_rcnn.py --workdir runs/shapes_mask_rcnn \
        --fcn_config configs/segmentation/shapes_fcn8s.py --fcn_workdir runs/shapes_fcn8s [--score_threshold 0.5]

Mask R-CNN's detections on each test image (latest checkpoint of --workdir) are merged into a label map
(vision_jax/evaluation/semantic_from_instances.py: masks pasted at the original resolution, the
highest-scoring detection scoring >= --score_threshold wins a pixel, other pixels background) and scored
with the segmentation metrics (vision_jax/evaluation/segmentation.py) against the scenes' semantic
labels; FCN-8s (latest checkpoint of --fcn_workdir) is scored by its own task's evaluator on the same
split. The two configs must read the same images: the same generated shapes split (variant, sizes,
data_dir, split), both at the scenes' own 128 x 128 (no resizing), so that the label maps are on the
same pixels; the script refuses them otherwise. Prints one JSON object (and writes it to --output).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable

import numpy as np

SAME_IMAGES_KEYS = ("name", "shapes_variant", "shapes_num_test", "data_dir")  # example i of a split is fixed


def check_same_images(detection_config, segmentation_config) -> None:
    """Refuses configs that would score different images or different pixels (module docstring)."""
    det, seg = detection_config.data, segmentation_config.data
    differ = [key for key in SAME_IMAGES_KEYS if det.get(key) != seg.get(key)]
    if differ:
        raise SystemExit(f"error: the two configs read different data: {[(k, det.get(k), seg.get(k)) for k in differ]}")
    if det.get("name") != "shapes":
        raise SystemExit(f"error: data.name={det.get('name')!r}: this comparison is written for the generated shapes")
    if not (det.image_size == det.min_size == det.max_size == seg.image_size == 128):
        raise SystemExit("error: both configs must keep the scenes' 128 x 128 pixels (data.image_size, min_size, "
                         f"max_size = 128); got {det.image_size}, {det.min_size}, {det.max_size} and {seg.image_size}")  # fmt: skip


def score_label_maps(label_maps: Iterable[tuple[int, np.ndarray]], truth: dict[int, np.ndarray],
                     class_names) -> tuple[dict[str, float], int]:  # fmt: skip
    """Segmentation metrics of (image_id, label map) pairs against truth {image_id: int [H, W]}; and the
    number of images scored. Raises on an image without truth or of another size."""
    from vision_jax.evaluation.segmentation import SegmentationEvaluator

    evaluator = SegmentationEvaluator(class_names)
    count = 0
    for image_id, labels in label_maps:
        if image_id not in truth or truth[image_id].shape != labels.shape:
            raise ValueError(f"image {image_id}: no ground truth of shape {labels.shape}")
        evaluator.update({"labels": labels[None]}, {"segmentation": truth[image_id][None], "example_valid": np.ones(1, bool)})
        count += 1
    return evaluator.result(), count


def semantic_truth(data_config, split: str) -> dict[int, np.ndarray]:
    """{image_id: uint8 [H, W]} semantic labels of the split's canonical examples."""
    from vision_jax.data import datasets

    ds, _ = datasets.load(data_config, split)
    return {int(ex["image_id"]): ex["segmentation"] for ex in ds.as_numpy_iterator()}


def mask_rcnn_label_maps(exp, score_threshold: float):
    """Yields (image_id, label map) over the experiment's eval split (its latest checkpoint)."""
    from vision_jax.evaluation.semantic_from_instances import label_maps_from_predictions
    from vision_jax.train import parallel

    variables = exp.state.variables
    for local in exp.eval_batches():
        predictions = parallel.to_host(exp.predict_step(variables, parallel.global_batch(local, exp.mesh)))
        yield from label_maps_from_predictions(predictions, local, score_threshold)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--fcn_config", required=True)
    parser.add_argument("--fcn_workdir", required=True)
    parser.add_argument("--score_threshold", type=float, default=0.5)
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args()

    from absl import logging

    from vision_jax.train.config import load_config_file
    from vision_jax.train.loop import Experiment

    logging.set_verbosity(logging.WARNING)
    detection_config, segmentation_config = load_config_file(args.config), load_config_file(args.fcn_config)
    for config in (detection_config, segmentation_config):
        config.data.eval_split = args.split
    check_same_images(detection_config, segmentation_config)
    results = {"split": args.split, "score_threshold": args.score_threshold}
    for name, config, workdir in (("mask_rcnn", detection_config, args.workdir),
                                  ("fcn", segmentation_config, args.fcn_workdir)):  # fmt: skip
        exp = Experiment(config, workdir)
        if exp.manager.latest_step() is None:
            raise SystemExit(f"error: no checkpoint in {workdir}: train {config.model.name} first")
        if name == "mask_rcnn":
            truth = semantic_truth(config.data, args.split)
            scores, count = score_label_maps(mask_rcnn_label_maps(exp, args.score_threshold), truth,
                                             exp.info.segmentation_class_names)  # fmt: skip
            if count != len(truth):
                raise SystemExit(f"error: scored {count} of the {len(truth)} images of the split")
            results["images"] = count
        else:
            scores = exp.evaluate()
        results[name] = {"step": exp.step, **scores}
    print(json.dumps(results, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

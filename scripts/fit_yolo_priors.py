"""Fits YOLO anchor priors to a detection config's training boxes: k-means on (width, height) with
the distance 1 - IoU of the two boxes centred (Redmon & Farhadi, YOLO9000, section 2).

    python scripts/fit_yolo_priors.py --config configs/detection/shapes_yolov3.py [--k 9] [--max_images 2000]

Boxes are read through the config's own detection input pipeline (evaluation transforms), so the
priors are in pixels of the network input at `data.image_size`, what `config.model.yolo.priors`
(YOLOv3Settings.priors, vision_jax/models/yolo/settings.py) expects. Prints the priors sorted by
area (paste them into the config; the default masks ((6, 7, 8), (3, 4, 5), (0, 1, 2)) then give the
largest three to the coarsest level) and the mean best-prior IoU.
"""

from __future__ import annotations

import argparse

import numpy as np
import tensorflow as tf

from vision_jax.data import datasets
from vision_jax.tasks import get_task
from vision_jax.train.config import load_config_file


def shape_iou(wh: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """[N, 2] x [K, 2] (width, height) -> [N, K] IoU of the boxes centred on each other."""
    inter = np.minimum(wh[:, None, 0], priors[None, :, 0]) * np.minimum(wh[:, None, 1], priors[None, :, 1])
    return inter / (wh.prod(1)[:, None] + priors.prod(1)[None, :] - inter)


def kmeans_priors(wh: np.ndarray, k: int, seed: int = 0, iterations: int = 300) -> np.ndarray:
    """k-means with d = 1 - shape IoU, k-means++-style seeding; cluster centres are medians."""
    if len(wh) < k:
        raise ValueError(f"need at least k={k} boxes to fit priors, got {len(wh)}")
    rng = np.random.default_rng(seed)
    priors = wh[rng.choice(len(wh), 1)]
    while len(priors) < k:
        distance = 1 - shape_iou(wh, priors).max(1)
        priors = np.concatenate([priors, wh[rng.choice(len(wh), 1, p=distance / distance.sum())]])
    for _ in range(iterations):
        nearest = shape_iou(wh, priors).argmax(1)
        updated = np.stack([np.median(wh[nearest == j], 0) if np.any(nearest == j) else priors[j] for j in range(k)])
        if np.allclose(updated, priors):
            break
        priors = updated
    return priors[np.argsort(priors.prod(1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--max_images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = load_config_file(args.config)
    ds, info = datasets.load(config.data, config.data.train_split)
    preprocess = get_task(config).preprocess(info, train=False)
    wh = []
    for example in ds.take(args.max_images).map(lambda ex: preprocess(ex, tf.constant([0, 0], tf.int64))):
        boxes, valid = example["boxes"].numpy(), example["valid"].numpy()
        wh.append(boxes[valid, 2:] - boxes[valid, :2])
    wh = np.concatenate(wh).astype(np.float64)
    priors = kmeans_priors(wh, args.k, args.seed)
    mean_iou = shape_iou(wh, priors).max(1).mean()
    print(f"{len(wh)} boxes; mean best-prior IoU {mean_iou:.3f}")
    print("priors =", tuple((round(float(w), 1), round(float(h), 1)) for w, h in priors))


if __name__ == "__main__":
    main()

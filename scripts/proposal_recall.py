"""Proposals per image and recall of a split's objects at IoU 0.5 / 0.7, for a config's `data.proposals`.

    python scripts/proposal_recall.py --config configs/detection/shapes_fast_rcnn.py [--split test]

Computes (or reads from the cache) the proposals exactly as training and evaluation do
(vision_jax.data.proposals.proposal_table), then counts the ground-truth boxes (crowd boxes excluded)
that some proposal overlaps at IoU >= 0.5 and >= 0.7. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time

import numpy as np
import tensorflow_datasets as tfds


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--split", default=None, help="default: the config's data.eval_split")
    parser.add_argument("--proposals", default="selective_search",
                        help="data.proposals to measure (default selective_search)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    from vision_jax.data import datasets, proposals

    config = _load_config(args.config)
    if "proposals" not in config.data:
        proposals.add_proposal_defaults(config)
    config.data.proposals = args.proposals
    split = args.split or config.data.eval_split
    start = time.perf_counter()
    table = proposals.proposal_table(config.data, split)
    seconds = time.perf_counter() - start
    ds, _ = datasets.load(config.data, split)
    truth = {}
    for example in tfds.as_numpy(ds):
        boxes = np.asarray(example["boxes"]).reshape(-1, 4)
        crowd = np.asarray(example.get("is_crowd", np.zeros(len(boxes), bool)), bool)
        truth[int(example["image_id"])] = boxes[~crowd]
    result = proposals.proposal_recall(table, truth)
    result.update(split=split, images=len(truth), seconds_to_get_proposals=round(seconds, 1),
                  whole_image_fallbacks=table.whole_image_fallbacks, source=table.source)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

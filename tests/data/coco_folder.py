"""Writes a small COCO-format folder (json + PNG/JPEG images) with polygon and RLE masks, for tests.

Imported by basename from the data tests. Every mask is known independently of pycocotools where it
can be: RLE annotations encode a random NumPy mask (compressed with pycocotools' encoder, uncompressed
by the NumPy run-length code below), so decoding must give that mask back; polygons are rectangles.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

CATEGORIES = [{"id": 7, "name": "kite"}, {"id": 3, "name": "car"}, {"id": 12, "name": "zebra"}]  # unsorted on purpose
SORTED_NAMES = ("car", "kite", "zebra")  # classes 0, 1, 2 = ids 3, 7, 12


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major (Fortran) pixel order, starting with 0s."""
    flat = mask.flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def write_coco_folder(root, rng, split: str, image_ids: list[int]) -> dict:
    """Writes root/<split>.json and root/<split>/*.png|jpg. Returns, per image id, the reference:
    size, pixels, and the annotations in id order with their expected xyxy box, class, crowd flag,
    mask (None for the dropped degenerate one)."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations, reference = [], [], {}
    next_annotation = 1000 + 100 * len(image_ids)
    for index, image_id in enumerate(image_ids):
        h, w = (int(v) for v in rng.integers(12, 40, 2))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(pixels).save(os.path.join(root, split, file_name))
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        objects = []
        kinds = [] if index == 1 else ["polygon", "rle", "crowd_rle", "degenerate", "outside"][: 2 + index % 4]
        for kind in kinds:
            category = CATEGORIES[int(rng.integers(0, 3))]
            x, y = float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2))
            bw, bh = float(rng.uniform(2, w / 2)), float(rng.uniform(2, h / 2))
            annotation = {"id": next_annotation, "image_id": image_id, "category_id": category["id"],
                          "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0}
            mask = None
            if kind in ("polygon", "degenerate", "outside"):
                if kind == "degenerate":
                    annotation["bbox"] = [x, y, 0.0, bh]
                if kind == "outside":
                    annotation["bbox"] = [x, y, 2.0 * w, bh]  # clipped at the right edge
                polygon = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
                annotation["segmentation"] = [polygon]
                mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], h, w)))
            else:
                mask = (rng.random((h, w)) < 0.4).astype(np.uint8)
                if kind == "rle":
                    rle = mask_utils.encode(np.asfortranarray(mask))
                    annotation["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                else:
                    annotation["segmentation"] = uncompressed_rle(mask)
                    annotation["iscrowd"] = 1
            bx, by, bw2, bh2 = annotation["bbox"]
            box = np.array([bx, by, min(bx + bw2, w), min(by + bh2, h)])
            objects.append({"id": next_annotation, "box": box, "class": SORTED_NAMES.index(category["name"]),
                            "crowd": bool(annotation["iscrowd"]), "mask": None if kind == "degenerate" else mask})
            annotations.append(annotation)
            next_annotation -= 1  # decreasing ids: the loader must order by annotation id, not file order
        reference[image_id] = {"size": (h, w), "pixels": pixels, "objects": sorted(objects, key=lambda o: o["id"])}
    rng.shuffle(images)  # file order is not id order
    with open(os.path.join(root, f"{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return reference

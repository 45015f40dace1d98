"""Issue 5, acceptance b: a user's own COCO-format folder trains and evaluates through the one loop with
only `--config.data.name=coco_json --config.data.root=DIR` changed in the shapes Faster R-CNN config (plus
speed overrides for this 2-core machine), and the model learns it: AP50 by pycocotools on val.json."""

import json
import os

import numpy as np
import pytest
from command_line import command_line_config
from PIL import Image
from pycocotools import mask as mask_utils

from vision_jax.train.loop import train_and_evaluate

CATEGORIES = [{"id": 11, "name": "red square"}, {"id": 4, "name": "blue disc"}]
# Speed overrides only (nothing about the dataset): a 64 px canvas, a narrow net, few steps.
FAST = [
    "--config.data.image_size=64",
    "--config.data.min_size=64",
    "--config.data.max_size=64",
    "--config.data.random_flip=False",
    "--config.model.width=8",
    "--config.model.rcnn.box_head_fc_dim=128",
    "--config.optimizer.learning_rate=0.003",
    "--config.optimizer.warmup_steps=20",
    "--config.train.num_steps=150",
    "--config.train.batch_size=2",
    "--config.train.eval_batch_size=4",
    "--config.train.log_every=50",
    "--config.train.eval_every=1000",
    "--config.train.checkpoint_every=1000",
    "--config.train.num_pictures=2",
    "--config.train.progress_bar=False",
]


def write_scenes(root, split: str, rng: np.random.Generator, image_ids: list[int], rle_discs: bool = False) -> None:
    """root/<split>.json + root/<split>/*.png: noisy grey 56-64 px images with 1-3 objects, red squares
    (polygon masks) and blue discs (a polygon around the disc, or with `rle_discs` the disc's own mask as
    compressed RLE), 14-26 px, not overlapping."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations = [], []
    for image_id in image_ids:
        height, width = (int(v) for v in rng.integers(56, 65, 2))
        pixels = rng.normal(128, 12, (height, width, 3)).clip(0, 255)
        taken = np.zeros((height, width), bool)
        for _ in range(int(rng.integers(1, 4))):
            side = int(rng.integers(14, 27))
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            if taken[y : y + side, x : x + side].any():
                continue
            taken[y : y + side, x : x + side] = True
            # With rle_discs the classes alternate, so that both kinds of segmentation occur.
            category = CATEGORIES[len(annotations) % 2] if rle_discs else CATEGORIES[int(rng.integers(0, 2))]
            if category["name"] == "red square":
                pixels[y : y + side, x : x + side] = (220, 30, 30)
            else:
                rows, cols = np.mgrid[:height, :width]
                centre = (y + side / 2 - 0.5, x + side / 2 - 0.5)
                disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= (side / 2) ** 2
                pixels[disc] = (30, 30, 220)
            polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
            segmentation = [polygon]
            if rle_discs and category["name"] == "blue disc":
                rle = mask_utils.encode(np.asfortranarray(disc.astype(np.uint8)))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category["id"],
                    "bbox": [x, y, side, side],
                    "area": side * side,
                    "iscrowd": 0,
                    "segmentation": segmentation,
                }
            )
        file_name = f"{image_id:04d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, split, file_name))
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    with open(os.path.join(root, f"{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)


@pytest.mark.slow
def test_own_coco_json_folder_trains_and_evaluates_with_only_name_and_root(repo_root, tmp_path, seed):
    root = tmp_path / "my_coco"
    # The same four scenes as train and val: the test checks the data path end to end by overfitting.
    write_scenes(root, "train", np.random.default_rng(seed), [3, 8, 13, 21])
    write_scenes(root, "val", np.random.default_rng(seed), [3, 8, 13, 21])
    config = command_line_config(
        repo_root,
        "configs/detection/shapes_faster_rcnn.py",
        "--config.data.name=coco_json",
        f"--config.data.root={root}",
        *FAST,
    )
    results = train_and_evaluate(config, str(tmp_path / "run"))
    print(f"seed={seed}: {results}")
    assert results["AP50"] >= 0.9, f"seed={seed}: {results}"
    # Detections were saved as a COCO results json with the folder's own image and category ids.
    saved = [name for name in os.listdir(tmp_path / "run" / "eval") if name.endswith("detections_coco.json")]
    assert saved, os.listdir(tmp_path / "run" / "eval")
    with open(tmp_path / "run" / "eval" / saved[0]) as f:
        detections = json.load(f)
    assert detections and {d["image_id"] for d in detections} <= {3, 8, 13, 21}
    assert {d["category_id"] for d in detections} <= {4, 11}
    assert sorted(os.listdir(tmp_path / "run" / "pictures")) == ["eval_00.png", "eval_01.png", "eval_sheet.png"]


@pytest.mark.slow
def test_own_coco_json_folder_with_polygon_and_rle_masks_trains_mask_rcnn(repo_root, tmp_path, seed):
    """Issue 12, acceptance c: the shapes Mask R-CNN config on a coco_json folder whose squares are polygons
    and whose discs are compressed RLE, with only data.name and data.root changed (and the speed overrides):
    the model overfits it to box and mask AP50 >= 0.9 (pycocotools segm against the json's masks)."""
    root = tmp_path / "my_coco"
    write_scenes(root, "train", np.random.default_rng(seed), [3, 8, 13, 21], rle_discs=True)
    write_scenes(root, "val", np.random.default_rng(seed), [3, 8, 13, 21], rle_discs=True)
    with open(root / "val.json") as f:
        kinds = {type(a["segmentation"]).__name__ for a in json.load(f)["annotations"]}
    config = command_line_config(
        repo_root,
        "configs/detection/shapes_mask_rcnn.py",
        "--config.data.name=coco_json",
        f"--config.data.root={root}",
        *FAST,
        "--config.model.rcnn.mask_head_conv_dim=16",
        "--config.train.num_steps=200",
    )
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert kinds == {"list", "dict"}, kinds  # polygons and RLE
    print(f"seed={seed}: {results}")
    assert results["AP50"] >= 0.9 and results["mask_AP50"] >= 0.9, f"seed={seed}: {results}"
    with open(next((tmp_path / "run" / "eval").glob("*detections_coco.json"))) as f:
        detections = json.load(f)
    assert all("segmentation" in d for d in detections)

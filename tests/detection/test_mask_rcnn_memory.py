"""Host memory per image of Mask R-CNN's input pipeline at COCO size (issue 12, acceptance e): the real
preprocess of configs/detection/mask_rcnn_R50_FPN.py on a COCO-sized image (480 x 640, 100 polygon
instances) from a coco_json folder. A training example holds the masks as 100 x 112 x 112 uint8 box
masks (1.25 MB) whatever the image size, where canvas-aligned masks at the 1344 canvas would hold
100 x 1344 x 1344 bytes (180 MB, what an evaluation batch would carry if its evaluator read masks from
batches; the COCO config's evaluator reads the json, so its evaluation batches carry none)."""

import json
import os

import numpy as np
import tensorflow as tf
from mask_rcnn_memory import example_bytes
from PIL import Image

from vision_jax.data import datasets
from vision_jax.tasks import get_task
from vision_jax.train.config import load_config_file

HEIGHT, WIDTH, INSTANCES = 480, 640, 100


def write_coco_sized_folder(root: str, rng: np.random.Generator) -> None:
    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(os.path.join(root, "train", "1.png"))
    annotations = []
    for i in range(INSTANCES):
        x, y = rng.uniform(0, WIDTH - 60), rng.uniform(0, HEIGHT - 60)
        w, h = rng.uniform(8, 60, 2)
        annotations.append({"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h], "area": w * h,
                            "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w / 2, y + h]]})  # fmt: skip
    with open(os.path.join(root, "train.json"), "w") as f:
        json.dump({"images": [{"id": 1, "file_name": "1.png", "height": HEIGHT, "width": WIDTH}],
                   "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}, f)  # fmt: skip


def test_training_example_holds_box_masks_of_fixed_size(tmp_path, rng, seed):
    root = str(tmp_path / "coco")
    write_coco_sized_folder(root, rng)
    config = load_config_file("configs/detection/mask_rcnn_R50_FPN.py")
    config.data.root = root
    config.data.eval_split = "train"
    ds, info = datasets.load(config.data, "train")
    task = get_task(config)
    example = next(iter(ds.take(1)))
    train = example_bytes(task.preprocess(info, True)(example, tf.constant([seed % 2**31, 0], tf.int64)))
    crop = config.data.mask_crop_size
    assert train["box_masks"] == INSTANCES * crop * crop == 1_254_400, train
    assert "masks" not in train
    side = config.data.image_size
    assert train["image"] == side * side * 3 * 4  # the float32 canvas, 21.7 MB: now the largest part
    # The COCO evaluator reads the json: no masks in evaluation examples.
    evaluation = example_bytes(task.preprocess(info, False)(example, tf.constant([0, 0], tf.int64)))
    assert "masks" not in evaluation and "box_masks" not in evaluation
    total = sum(train.values())
    print(f"seed={seed} bytes per training example: {train} (total {total / 2**20:.1f} MiB)")
    assert total < 1.1 * (train["image"] + train["box_masks"])

"""YOLO v3 trained by the one train loop on a few generated scenes overfits them to COCO AP50 >= 0.95
measured by pycocotools (issue 6, acceptance b).

YOLO v1 has no such test: its paper's fully connected head learns the scenes slowly (AP50 0.52 after
the same 180 steps here); its targets, loss and decoding are checked against NumPy instead, and its
classes' generalisation across cells (issue 13) in test_yolo_v1_cells.py."""

import pytest

from vision_jax.train import loop
from vision_jax.train.config import base_config

# 3 steps per epoch; batches of 4 keep BatchNorm's statistics close to its running averages
# (batches of 2 left the evaluation at AP50 ~0.9).
NUM_IMAGES, BATCH = 12, 4
# The shapes config's k-means priors (configs/detection/shapes_yolov3.py) at half the image size.
PRIORS_64 = (
    (7.5, 7.5),
    (8.5, 8.5),
    (10.0, 10.0),
    (12.0, 12.0),
    (13.5, 14.0),
    (15.5, 15.5),
    (17.5, 18.0),
    (20.0, 20.0),
    (23.5, 23.5),
)


STEPS = 240


def overfit_config(data_dir: str):
    c = base_config("detection", model="yolo_v3")
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", data_dir
    c.data.shapes_num_train, c.data.shapes_num_test = NUM_IMAGES, 1
    c.data.eval_split = "train"  # overfitting: evaluated on the training images
    c.data.image_size, c.data.fixed_size = 64, True  # the 128 x 128 scenes at half size
    c.data.random_flip, c.data.max_instances = False, 8
    c.model.backbone, c.model.width = "resnet18", 8
    c.model.yolo.priors, c.model.yolo.neck_channels = PRIORS_64, 32
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.optimizer.grad_clip_norm = 10.0
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = STEPS, BATCH, NUM_IMAGES
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, STEPS, STEPS
    c.train.num_pictures, c.train.progress_bar = 0, False
    return c


@pytest.mark.slow
def test_yolo_v3_overfits_a_few_scenes_to_ap50(tmp_path_factory):
    config = overfit_config(str(tmp_path_factory.mktemp("tfds")))
    results = loop.train_and_evaluate(config, str(tmp_path_factory.mktemp("overfit")))
    print(f"after {STEPS} steps on {NUM_IMAGES} images: {results}")
    assert results["AP50"] >= 0.95, f"AP50={results['AP50']:.3f} after {STEPS} steps on {NUM_IMAGES} images: {results}"

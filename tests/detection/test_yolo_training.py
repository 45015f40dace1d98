"""YOLO v3 and v1 trained by the one train loop on a few generated scenes: each overfits them to
COCO AP50 >= 0.95 measured by pycocotools (issue 6, acceptance b)."""

import pytest

from vision_jax.train import loop
from vision_jax.train.config import base_config

# The loop rebuilds its tf.data pipeline every epoch (a second or more here), so the scenes are
# several batches: 3 steps per epoch.
NUM_IMAGES, BATCH = 6, 2
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


def overfit_config(data_dir: str, model_name: str, steps: int):
    c = base_config("detection")
    c.data.name, c.data.shapes_variant, c.data.data_dir = "shapes", "multi", data_dir
    c.data.shapes_num_train, c.data.shapes_num_test = NUM_IMAGES, 1
    c.data.eval_split = "train"  # overfitting: evaluated on the training images
    c.data.image_size, c.data.fixed_size = 64, True  # the 128 x 128 scenes at half size
    c.data.random_flip, c.data.max_instances = False, 8
    c.model.name, c.model.backbone, c.model.width = model_name, "resnet18", 8
    y = c.model.yolo
    y.priors, y.neck_channels = PRIORS_64, 32
    y.grid_size, y.boxes_per_cell, y.head_channels, y.fc_dim, y.dropout = 8, 2, 32, 256, 0.0
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.warmup_steps = "adamw", 3e-3, 20
    c.optimizer.grad_clip_norm = 10.0
    c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = steps, BATCH, NUM_IMAGES
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 50, steps, steps
    c.train.num_pictures, c.train.progress_bar = 0, False
    return c


@pytest.mark.slow
@pytest.mark.parametrize("model_name, steps", [("yolo_v3", 180), ("yolo_v1", 180)])
def test_overfits_a_few_scenes_to_ap50(tmp_path_factory, model_name, steps):
    config = overfit_config(str(tmp_path_factory.mktemp("tfds")), model_name, steps)
    results = loop.train_and_evaluate(config, str(tmp_path_factory.mktemp("overfit")))
    print(f"{model_name}: after {steps} steps on {NUM_IMAGES} images: {results}")
    assert results["AP50"] >= 0.95, f"{model_name}: AP50={results['AP50']:.3f} after {steps} steps: {results}"

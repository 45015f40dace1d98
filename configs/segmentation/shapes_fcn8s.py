"""FCN-8s on the generated shapes scenes (128×128, 1-6 overlapping shapes; 6 classes with background).

    python scripts/train.py --config configs/segmentation/shapes_fcn8s.py --workdir runs/shapes_fcn8s

Backbone: ResNet-18 (width 32, trained from scratch), FCN-8s skips from C4 and C3.
Measured: see the README's results table (filled from runs on the 2-core CPU machine).
Own data: add `--config.data.name=mask_folder --config.data.root=DIR` (DIR/<split>/images, masks).
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("segmentation")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: the builder's default size (5000)
    c.data.shapes_num_test = config_dict.placeholder(int)  # None: 500
    c.data.image_size = 128
    c.data.random_flip = True

    c.model.name = "fcn8s"
    c.model.backbone = "resnet18"
    c.model.width = 16
    c.model.stem = "imagenet"
    c.model.head_features = 0

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 5e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 100

    c.train.num_steps = 2500
    c.train.batch_size = 8
    c.train.eval_batch_size = 100
    c.train.log_every = 50
    c.train.eval_every = 1250
    c.train.checkpoint_every = 1250
    return c

"""FCN-8s on the generated shapes scenes (128×128, 1-6 overlapping shapes; 6 classes with background).

    python scripts/train.py --config configs/segmentation/shapes_fcn8s.py --workdir runs/shapes_fcn8s

Backbone: ResNet-18 (width 16, trained from scratch), FCN-8s skips from C4 and C3; AdamW 5e-3, cosine,
4000 steps of 8 images (6.4 epochs of the 5000 training images), random flips.

Measured on the 2-core CPU machine (shared: load average 9.2 at the start, 6.7 at the end), test split
(500 images): mIoU 0.817, pixel accuracy 0.979, mean class accuracy 0.889, frequency-weighted IoU 0.961
(IoU background 0.982, circle 0.921, square 0.821, triangle 0.747, star 0.675, cross 0.754); wall time
of the whole command 15 min 42 s (data already generated; includes compilation, 2 evaluations,
checkpoints). At step 2000: mIoU 0.772. FCN-32s on the same recipe: configs/segmentation/shapes_fcn32s.py.
Own data: add `--config.data.name=mask_folder --config.data.root=DIR` (DIR/<split>/images, masks).
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("segmentation", model="fcn8s")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: the builder's default size (5000)
    c.data.shapes_num_test = config_dict.placeholder(int)  # None: 500
    c.data.image_size = 128
    c.data.random_flip = True

    c.model.backbone = "resnet18"
    c.model.width = 16
    c.model.stem = "imagenet"

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 5e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 100

    c.train.num_steps = 4000
    c.train.batch_size = 8
    c.train.eval_batch_size = 100
    c.train.log_every = 50
    c.train.eval_every = 2000
    c.train.checkpoint_every = 2000
    return c

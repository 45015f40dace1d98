"""SSD512 on VGG-16 for COCO 2017 (Liu et al., 2016), for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/ssd512_vgg16_coco.py --workdir runs/ssd512_vgg16_coco

512x512 fixed-size input with SSD's augmentations; seven sources (conv4_3 with L2Norm, fc7 and
five extra layers, the last a 4x4 conv) at 64, 32, 16, 8, 4, 2, 1 cells, 24564 default boxes with
the Caffe SSD512 COCO scales (0.07 ... 1.05) and steps (8 ... 512); matching at IoU 0.5, 3:1 hard
negative mining; decoding with score > 0.01, NMS 0.45, top 200. The paper's COCO recipe: SGD
learning rate 1e-3 for 160k iterations, then 1e-4 and 1e-5 up to 200k, batch 32. Evaluation:
COCO AP on val2017 with pycocotools (the paper's SSD512 reaches 26.8 AP on test-dev with an
ImageNet-pretrained VGG-16; this project ships no ImageNet weights).
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data).
"""

from vision_jax.models.ssd import SSD512_ASPECT_RATIOS, SSD512_EXTRAS, SSD512_SCALES, SSD512_STEPS
from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="ssd")
    c.data.name = "coco/2017"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 512
    c.data.fixed_size = True
    c.data.min_size = 512
    c.data.max_size = 512
    c.data.random_flip = True
    c.data.ssd_augment = True
    c.data.max_instances = 100
    c.data.cache = False

    c.model.backbone = "vgg16"
    c.model.width = 64
    s = c.model.ssd
    s.aspect_ratios = SSD512_ASPECT_RATIOS
    s.scales = SSD512_SCALES
    s.steps = SSD512_STEPS
    s.extras = SSD512_EXTRAS

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.8, 0.9)  # 160k and 180k of 200k
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 1000

    c.train.num_steps = 200_000
    c.train.batch_size = 32
    c.train.eval_batch_size = 32
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 5_000
    return c

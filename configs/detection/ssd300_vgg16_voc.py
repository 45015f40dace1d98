"""SSD300 on VGG-16 for PASCAL VOC (Liu et al., 2016; torchvision's ssd300_vgg16 layout), for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/ssd300_vgg16_voc.py --workdir runs/ssd300_vgg16_voc

The paper's VOC recipe: 300x300 fixed-size input, SSD's augmentations (photometric distortion,
expand, min-IoU crop, flip), default boxes with torchvision's scales (0.07 ... 1.05) and steps
(8 ... 300), 8732 boxes, matching at IoU 0.5, 3:1 hard negative mining, SGD momentum 0.9, weight
decay 5e-4, learning rate 1e-3 for 80k iterations then 1e-4 and 1e-5 (here steps at 80k and
100k of 120k), batch 32. Evaluation: VOC2007 test with the 11-point AP50 ('voc07'), the
paper's metric (77.2 mAP for SSD300 trained on 07+12 with ImageNet-pretrained VGG-16).

Data: the paper trains on VOC2007 trainval + VOC2012 trainval ("07+12"); vision_jax's tfds
loader reads one dataset per run, so this config trains on voc/2007 'train+validation' (5011
images); for 07+12, point data.name at a coco_json folder holding both, or extend the loader.
This project ships no ImageNet weights: the VGG-16 trains from random initialisation (the paper
fine-tunes an ImageNet model; expect a lower figure without it).
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data).
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="ssd")
    c.data.name = "voc/2007"
    c.data.train_split = "train+validation"
    c.data.eval_split = "test"
    c.data.eval_metric = "voc07"
    c.data.image_size = 300
    c.data.fixed_size = True
    c.data.min_size = 300
    c.data.max_size = 300
    c.data.random_flip = True
    c.data.ssd_augment = True
    c.data.max_instances = 64
    c.data.cache = False

    c.model.backbone = "vgg16"
    c.model.width = 64
    # model.ssd keeps its defaults: SSD300 (aspect ratios, scales, steps, extras, L2Norm 20).

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.667, 0.833)  # 80k and 100k of 120k
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 500

    c.train.num_steps = 120_000
    c.train.batch_size = 32
    c.train.eval_batch_size = 32
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.train.checkpoint_every = 5_000
    return c

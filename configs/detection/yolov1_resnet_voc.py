"""YOLO v1 (Redmon et al., 2016) on PASCAL VOC 2007 at the paper's 448x448, ResNet-50 backbone, for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/yolov1_resnet_voc.py --workdir runs/yolov1_resnet_voc

The paper's detection head and loss, which are YOLOv1Settings' defaults: 7x7 grid, 2 boxes per
cell, the last four 3x3 convs (1024 filters, one with stride 2: 14x14 -> 7x7 on ResNet-50's C5) and
two fully connected layers (4096 with dropout 0.5, then 7x7x30), sum-squared loss with lambda_coord
5 and lambda_noobj 0.5 on sqrt(w), sqrt(h); confidence target = IoU. The paper's 24-conv Darknet
backbone (ImageNet pretrained at 224²) is replaced by a ResNet-50 (random initialisation: this
project ships no ImageNet weights; expect less than the paper's 63.4 mAP on 07+12). Schedule as in the paper:
135 epochs of batch 64 (~5011 / 64 * 135 ~ 10.6k steps), SGD momentum 0.9, weight decay 5e-4,
lr 1e-3 warm-up to 1e-2, then steps down at 75 and 105 epochs (here 0.56 and 0.78 of the run).
Data: voc/2007 'train+validation' (the paper adds VOC 2012), fixed-size resize, flips.
Evaluation: VOC2007 test, 11-point AP50 ('voc07'), NMS 0.5.
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data).
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="yolo_v1")
    c.data.name = "voc/2007"
    c.data.train_split = "train+validation"
    c.data.eval_split = "test"
    c.data.eval_metric = "voc07"
    c.data.image_size = 448
    c.data.fixed_size = True
    c.data.min_size = 448
    c.data.max_size = 448
    c.data.random_flip = True
    c.data.max_instances = 64
    c.data.cache = False

    c.model.backbone = "resnet50"
    c.model.width = 64
    y = c.model.yolo
    y.nms_threshold = 0.5
    y.score_threshold = 0.005

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.56, 0.78)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 500
    c.optimizer.grad_clip_norm = 10.0

    c.train.num_steps = 10_600
    c.train.batch_size = 64
    c.train.eval_batch_size = 32
    c.train.log_every = 100
    c.train.eval_every = 2_000
    c.train.checkpoint_every = 1_000
    return c

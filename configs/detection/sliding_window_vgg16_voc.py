"""Sliding-window detection (OverFeat-style) on VGG-16 for PASCAL VOC, for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/sliding_window_vgg16_voc.py --workdir runs/sliding_window_vgg16_voc

Windows: VGG-16's conv5_3 (stride 16, 512 channels) of the image at scales 1, 0.5 and 0.25 (a
3-level pyramid, OverFeat's multi-scale evaluation in training too); five window shapes of 3x3, 5x5,
7x7, 3x5 and 5x3 cells (rows x columns), i.e. squares of 48, 80 and 112 px, 80 px wide x 48 tall and
48 wide x 80 tall at scale 1, x2 and x4 at the coarser scales (up to 448 px), on images resized to a 480 px short side (640 at most) in a
640 px canvas: 8196 windows per canvas (those centred on its padding are dropped). Each window shape
has its classifier (two FC-1024 layers, the first over the window's cells, run as convolutions) with
OverFeat's class-specific box regression (80M parameters in all, 15M of them VGG-16's convolutions);
windows at IoU >= 0.5 with an object are its class, < 0.4 background, 256 windows per image with 25%
foreground per step. Evaluation: VOC2007 test with the 11-point AP50 ('voc07').
OverFeat (Sermanet et al., 2014) reported detection on ImageNet (ILSVRC 2013: 24.3 mAP after the competition), not VOC.

Data as configs/detection/ssd300_vgg16_voc.py: voc/2007 'train+validation' (5011 images); this
project ships no ImageNet weights, so the VGG-16 trains from random initialisation.
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data).
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="sliding_window")
    c.data.name = "voc/2007"
    c.data.train_split = "train+validation"
    c.data.eval_split = "test"
    c.data.eval_metric = "voc07"
    c.data.image_size = 640  # the padded square canvas
    c.data.min_size = 480
    c.data.max_size = 640
    c.data.random_flip = True
    c.data.max_instances = 64
    c.data.cache = False

    c.model.backbone = "vgg16"
    c.model.width = 64
    w = c.model.sliding_window
    w.feature = "conv5_3"
    w.scales = (1.0, 0.5, 0.25)
    w.window_shapes = ((3, 3), (5, 5), (7, 7), (3, 5), (5, 3))
    w.fc_dim = 1024
    w.num_samples = 256

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.667, 0.833)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 500

    c.train.num_steps = 120_000
    c.train.batch_size = 16
    c.train.eval_batch_size = 16
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.train.checkpoint_every = 5_000
    return c

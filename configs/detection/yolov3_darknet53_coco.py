"""YOLO v3 (Redmon & Farhadi, 2018) with Darknet-53 on COCO 2017 at 416x416, for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/yolov3_darknet53_coco.py --workdir runs/yolov3_darknet53_coco \
        --config.model.cross_replica_bn=True

The paper's model: Darknet-53 (width 32, residual blocks 1, 2, 8, 8, 4), the FPN-like neck of
yolov3.cfg (512/256/128), three scales (strides 32, 16, 8) with COCO's nine k-means priors at 416²
((10, 13) ... (373, 326)), masks (6, 7, 8), (3, 4, 5), (0, 1, 2); objectness and class BCE, the
v3 box loss with weight 2 - w h, ignore threshold 0.5; decoding with score threshold 0.005,
per-class NMS 0.45, 100 detections. Schedule after darknet's yolov3.cfg: 500k steps of batch 64,
lr 1e-3 with 1000 warm-up steps, steps at 400k and 450k (x 0.1), SGD momentum 0.9, weight decay
5e-4. The paper pretrains Darknet-53 on ImageNet and uses multi-scale training (320-608); here the
backbone trains from random initialisation at a fixed 416² (synchronised BatchNorm via the flag in
the command; the file leaves it off, the default, because tests/test_configs.py traces the loss
outside shard_map).
The paper's figure: 55.3 AP50 / 31.0 AP at 416² on test-dev.
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data).
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="yolo_v3")
    c.data.name = "coco/2017"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 416
    c.data.fixed_size = True
    c.data.min_size = 416
    c.data.max_size = 416
    c.data.random_flip = True
    c.data.max_instances = 100
    c.data.cache = False

    c.model.backbone = "darknet53"
    c.model.width = 32
    c.model.yolo.score_threshold = 0.005

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.8, 0.9)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 1000
    c.optimizer.grad_clip_norm = 10.0

    c.train.num_steps = 500_000
    c.train.batch_size = 64
    c.train.eval_batch_size = 32
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 5_000
    return c

"""Faster R-CNN R50-FPN on COCO 2017 at detectron2's full size (800 px short side), for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/faster_rcnn_R50_FPN.py --workdir runs/coco_faster_rcnn_R50_FPN \
        --config.model.cross_replica_bn=True

The model and its training targets are detectron2's R50-FPN (anchors 32-512 on P2-P6, RPN 256
anchors/image, 2000/1000 proposals per level/image in training, RoI head 512 samples/image,
RoIAlign 7x7, two FC-1024, NMS 0.5, 100 detections). This project ships no ImageNet weights, so
the backbone trains from random initialisation with synchronised BatchNorm (the flag in the
command; the file leaves it off, the default, because tests/test_configs.py traces the loss
outside shard_map, where the 'data' axis does not exist) and a 3x schedule (270k steps of 16
images), the recipe of He et al. 2019 ("Rethinking ImageNet Pre-training"); with pretrained
weights, detectron2's 1x recipe is model.norm='frozen', model.frozen_stages=2, train.num_steps=90000.
Evaluation: COCO AP on val2017 with pycocotools.
Measured: not run here (no GPU in this project's machines); the configuration is built and one
train step traced in tests/test_configs.py (tfds mock data). detectron2's reference figure for
this model (with ImageNet pretraining, 1x) is 37.9 box AP.
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="faster_rcnn")
    c.data.name = "coco/2017"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 1344  # padded canvas, a multiple of 64 above max_size
    c.data.min_size = 800
    c.data.max_size = 1333
    c.data.scale_jitter = (640, 672, 704, 736, 768, 800)  # detectron2's training short sides
    c.data.random_flip = True
    c.data.max_instances = 100
    c.data.cache = False

    c.model.backbone = "resnet50"
    c.model.width = 64

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.02
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.78, 0.93)  # detectron2 3x: steps 210k and 250k of 270k
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 1000

    c.train.num_steps = 270_000
    c.train.batch_size = 16
    c.train.eval_batch_size = 16
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.checkpoint_every = 5_000
    return c

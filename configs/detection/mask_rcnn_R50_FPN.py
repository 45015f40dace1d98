"""Mask R-CNN R50-FPN on COCO 2017 instances at detectron2's full size (800 px short side), for GPU/TPU
hosts: faster_rcnn_R50_FPN.py's recipe plus detectron2's mask head (RoIAlign 14x14 on P2..P5, four
3x3 convs of 256, 2x2 deconv, 28x28 class-specific masks, mask loss weight 1).

    python scripts/train.py --config configs/detection/mask_rcnn_R50_FPN.py --workdir runs/coco_mask_rcnn_R50_FPN \
        --config.data.root=/path/to/coco --config.model.cross_replica_bn=True

tfds' coco/2017 has no instance masks, so the data is a `coco_json` folder (vision_jax/data/coco_json.py):
root/train.json + root/train/ and root/validation.json + root/validation/, e.g. links to COCO's
annotations/instances_{train,val}2017.json and {train,val}2017/; polygons and RLE are rasterised by
pycocotools in the loader. Ground-truth masks travel canvas-aligned at half the canvas' resolution
(data.mask_size = 672: 100 instances x 672 x 672 bytes = 45 MB per image instead of 180 MB at full
size) until they are stored cropped to their boxes (issue 12). No ImageNet weights: random
initialisation with synchronised BatchNorm and the 3x schedule, as in faster_rcnn_R50_FPN.py.
Measured: not run here (no GPU in this project's machines); the model is built and one train step
traced in tests/test_configs.py. detectron2's reference for this model (ImageNet-pretrained, 1x) is
38.6 box AP / 35.2 mask AP.
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="mask_rcnn")
    c.data.name = "coco_json"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 1344  # padded canvas, a multiple of 64 above max_size
    c.data.min_size = 800
    c.data.max_size = 1333
    c.data.scale_jitter = (640, 672, 704, 736, 768, 800)  # detectron2's training short sides
    c.data.random_flip = True
    c.data.max_instances = 100
    c.data.with_masks = True
    c.data.mask_size = 672
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

"""Faster R-CNN C4 (the original paper's layout) with a small ResNet-18 on the generated shapes (128×128).

    python scripts/train.py --config configs/detection/shapes_faster_rcnn_c4.py --workdir runs/shapes_faster_rcnn_c4

No FPN: the RPN runs on C4 (stride 16) with all anchor sizes at every location, RoIs are pooled
14×14 from C4 (RoIAlign; --config.model.rcnn.roi_pooler_type=pool for Fast R-CNN's RoIPool) and
ResNet's res5 stage is the box head. Same data and schedule as shapes_faster_rcnn.py.
Not yet measured on the full schedule here (the FPN config is the measured shapes recipe); the C4
model itself is tested against the float64 reference in tests/detection/test_faster_rcnn.py.
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="faster_rcnn_c4")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)
    c.data.shapes_num_test = config_dict.placeholder(int)
    c.data.image_size = c.data.min_size = c.data.max_size = 128
    c.data.random_flip = True
    c.data.max_instances = 8

    c.model.backbone = "resnet18"
    c.model.width = 16
    c.model.rcnn.anchor_sizes = ((16, 32, 64),)  # one level, three sizes x three aspect ratios
    c.model.rcnn.rpn_pre_nms_topk_train = 1000  # the 8 x 8 x 9 = 576 anchors of a 128 px image
    c.model.rcnn.rpn_post_nms_topk_train = 300
    c.model.rcnn.rpn_post_nms_topk_test = 300
    c.model.rcnn.roi_pooler_resolution = 14
    c.model.rcnn.roi_num_samples = 64

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 200
    c.optimizer.grad_clip_norm = 10.0

    c.train.num_steps = 2000
    c.train.batch_size = 8
    c.train.eval_batch_size = 50
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

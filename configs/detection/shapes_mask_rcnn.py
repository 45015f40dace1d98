"""Mask R-CNN with a small ResNet-18-FPN on the generated shapes (128×128, 1–6 objects, 5 classes):
the recipe of shapes_faster_rcnn.py plus the mask head (RoIAlign 14×14 on P2..P5, 28×28 masks) and
the scenes' instance masks (data.with_masks).

    python scripts/train.py --config configs/detection/shapes_mask_rcnn.py --workdir runs/shapes_mask_rcnn

Not yet measured: no run of this config has been made. Evaluation reports box AP and mask AP
(`mask_AP`, ...: the 28×28 masks pasted by the detection task onto the canvas, which here is the
original image, with detectron2's paste; pycocotools `segm`). The same model overfits 4 scenes at
64×64 to mask AP50 1.0 in 300 steps (tests/detection/test_mask_rcnn_training.py).
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="mask_rcnn")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: the builder's default size
    c.data.shapes_num_test = config_dict.placeholder(int)
    c.data.image_size = 128  # the scenes' own size: no resizing
    c.data.min_size = 128
    c.data.max_size = 128
    c.data.random_flip = True
    c.data.max_instances = 8  # scenes hold at most 6 objects
    c.data.with_masks = True  # full-canvas masks: 8 x 128 x 128 bytes per image

    c.model.backbone = "resnet18"
    c.model.width = 16
    c.model.rcnn.fpn_channels = 32
    # Objects are 12-52 px: anchors one octave below detectron2's on every level.
    c.model.rcnn.anchor_sizes = ((16,), (32,), (64,), (128,), (256,))
    c.model.rcnn.rpn_pre_nms_topk_train = 1000
    c.model.rcnn.rpn_post_nms_topk_train = 500
    c.model.rcnn.rpn_pre_nms_topk_test = 500
    c.model.rcnn.rpn_post_nms_topk_test = 300
    c.model.rcnn.roi_num_samples = 64  # a few objects per image: 16 foreground RoIs at most
    c.model.rcnn.box_head_fc_dim = 256
    c.model.rcnn.mask_head_conv_dim = 64

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

"""Faster R-CNN C4 (the original paper's layout) with a small ResNet-18 on the generated shapes (128×128).

    python scripts/train.py --config configs/detection/shapes_faster_rcnn_c4.py --workdir runs/shapes_faster_rcnn_c4

No FPN: the RPN runs on C4 (stride 16) with all anchor sizes at every location, RoIs are pooled
14×14 from C4 (RoIAlign; --config.model.rcnn.roi_pooler_type=pool for Fast R-CNN's RoIPool) and
ResNet's res5 stage is the box head. Same data and schedule as shapes_faster_rcnn.py.
Not yet measured on the full schedule here (the FPN config is the measured shapes recipe); the C4
model itself is tested against the float64 reference in tests/detection/test_faster_rcnn.py.
"""

from vision_jax.train.config import shapes_detection_config


def get_config():
    c = shapes_detection_config("faster_rcnn_c4")  # the shapes data, ResNet-18 width 16, AdamW, batch 8
    c.model.rcnn.anchor_sizes = ((16, 32, 64),)  # one level, three sizes x three aspect ratios
    c.model.rcnn.rpn_pre_nms_topk_train = 1000  # the 8 x 8 x 9 = 576 anchors of a 128 px image
    c.model.rcnn.rpn_post_nms_topk_train = 300
    c.model.rcnn.rpn_post_nms_topk_test = 300
    c.model.rcnn.roi_pooler_resolution = 14
    c.model.rcnn.roi_num_samples = 64

    c.train.num_steps = 2000
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

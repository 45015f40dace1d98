"""Faster R-CNN with a small ResNet-18-FPN on the generated shapes (128×128, 1–6 objects, 5 classes).

    python scripts/train.py --config configs/detection/shapes_faster_rcnn.py --workdir runs/shapes_faster_rcnn

Then `scripts/evaluate.py` / `scripts/predict.py` with the same --config and --workdir (pictures with
class names and scores in runs/shapes_faster_rcnn/predictions).

Measured on the shared 2-core CPU machine (session 6; load average 1.3-3.8, the test suite running
beside it), test split (500 images), COCO metrics by pycocotools; 5.7 minutes from start to the last
evaluation, dataset cached, ~100 images/s in training:

    step   AP     AP50   AP75
     500   0.369  0.577  0.420
    1000   0.655  0.880  0.796
    1500   0.743  0.929  0.873
    2000   0.764  0.932  0.879   (APs 0.720, APm 0.813, AR100 0.816)

(Session 3's code: 0.761 / 0.934 / 0.873 in 19.9 minutes at load 5-9, ~18 images/s; the ResNet 1x1
convolutions as matrix products and the max-pool gradient of issue 14 came since.)
"""

from vision_jax.train.config import shapes_detection_config


def get_config():
    c = shapes_detection_config("faster_rcnn")  # the shapes data, ResNet-18 width 16, AdamW, batch 8
    c.model.rcnn.fpn_channels = 32
    # Objects are 12-52 px: anchors one octave below detectron2's on every level.
    c.model.rcnn.anchor_sizes = ((16,), (32,), (64,), (128,), (256,))
    c.model.rcnn.rpn_pre_nms_topk_train = 1000
    c.model.rcnn.rpn_post_nms_topk_train = 500
    c.model.rcnn.rpn_pre_nms_topk_test = 500
    c.model.rcnn.rpn_post_nms_topk_test = 300
    c.model.rcnn.roi_num_samples = 64  # a few objects per image: 16 foreground RoIs at most
    c.model.rcnn.box_head_fc_dim = 256

    c.train.num_steps = 2000
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

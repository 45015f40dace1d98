"""Mask R-CNN with a small ResNet-18-FPN on the generated shapes (128×128, 1–6 objects, 5 classes):
the recipe of shapes_faster_rcnn.py plus the mask head (RoIAlign 14×14 on P2..P5, 28×28 masks) and
the scenes' instance masks (data.with_masks).

    python scripts/train.py --config configs/detection/shapes_mask_rcnn.py --workdir runs/shapes_mask_rcnn

Not yet measured: no run of this config has been made. Evaluation reports box AP and mask AP
(`mask_AP`, ...: the 28×28 masks pasted by the evaluator into the original 128×128 image with
detectron2's paste, threshold 0.5; pycocotools `segm` against the scenes' exact masks). Training reads
the masks cropped to their boxes (112×112, data.mask_crop_size). The same model overfits 4 scenes at
64×64 to mask AP50 1.0 in 300 steps (tests/detection/test_mask_rcnn_training.py).
"""

import os

from vision_jax.train.config import load_config_file


def get_config():
    # shapes_faster_rcnn.py's recipe, unchanged; Mask R-CNN shares its `model.rcnn` group.
    c = load_config_file(os.path.join(os.path.dirname(__file__), "shapes_faster_rcnn.py"))
    c.model.name = "mask_rcnn"
    c.data.with_masks = True  # training: box masks 8 x 112 x 112 bytes per image; evaluation: canvas masks
    c.model.rcnn.mask_head_conv_dim = 64
    return c

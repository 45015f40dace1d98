"""Mask R-CNN with a small ResNet-18-FPN on the generated shapes (128×128, 1–6 objects, 5 classes):
the recipe of shapes_faster_rcnn.py plus the mask head (RoIAlign 14×14 on P2..P5, 28×28 masks) and
the scenes' instance masks (data.with_masks).

    python scripts/train.py --config configs/detection/shapes_mask_rcnn.py --workdir runs/shapes_mask_rcnn

Measured on the shared 2-core CPU machine (session 6, alone, load 1.5-3.7), test split (500 images),
pycocotools bbox and segm; 21.9 minutes from start to the last evaluation, 4 evaluations included:

    step   AP     AP50   AP75   mask_AP  mask_AP50  mask_AP75
     500   0.414  0.656  0.471  0.461    0.652      0.525
    1000   0.678  0.904  0.806  0.711    0.897      0.823
    1500   0.760  0.938  0.876  0.776    0.935      0.876
    2000   0.782  0.945  0.881  0.793    0.942      0.891   (mask_APs 0.773, mask_APm 0.935, mask_AR100 0.825)

Box AP is 0.017 above shapes_faster_rcnn.py's 0.764, trained by the same code the same day. An earlier
run on full-canvas ground-truth masks (before training read box-cropped ones; their 28x28 targets
differ on < 1% of pixels here: tests/detection/test_box_mask_targets.py) gave box AP 0.773, mask AP
0.789 in 61.4 minutes at load 6-16.

Evaluation reports box AP and mask AP
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

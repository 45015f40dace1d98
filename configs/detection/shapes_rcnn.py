"""R-CNN (Girshick et al. 2014) on the generated shapes (128x128, 1-6 objects, 5 classes): selective-search
proposals, each warped to 32x32 with the paper's context (16 px at 227 -> 2.3 px here) and classified by a
ResNet-18 of width 16 fine-tuned on warped regions, per-class linear SVMs with hard negative mining on its
fc features, class-specific box regression on its pooled features, per-class NMS at 0.3.

    python scripts/train.py --config configs/detection/shapes_rcnn.py --workdir runs/shapes_rcnn

One command runs every stage in order, each resumable (vision_jax/models/rcnn/rcnn_stages.py): proposals
(computed once in one process per core and cached, shared with shapes_fast_rcnn.py), fine-tuning,
features, SVMs, box regression, evaluation (metrics.jsonl, W/rcnn/evaluation.json, W/pictures).

Measured on the shared 2-core CPU machine (load average 4.2 at the start, 4.8 at the end), test split
(500 images), COCO metrics by pycocotools; 6.4 minutes for the stages after proposals (fine-tuning 2500
steps 4.3 min, features 1.4, SVMs 0.1, box regression 0.0, evaluation 0.4), with both splits'
selective-search proposals already in the cache shared with shapes_fast_rcnn.py (computing them takes
13.5 min once for the 5000 train scenes, 2 processes, load ~13: about 20 minutes in all):

    R-CNN (SVMs + box regression)   AP 0.725  AP50 0.917  AP75 0.866   (APs 0.705, APm 0.757, AR100 0.785)
    SVMs without box regression     AP 0.690  AP50 0.917  AP75 0.825
    the fine-tuned CNN's softmax    AP 0.702  AP50 0.940  AP75 0.835

Inference per image (batch 1): selective search 48 ms, warp + CNN features 25 ms, SVMs and box
regression 1.0 ms, NMS 0.4 ms.
"""

from vision_jax.train.config import shapes_detection_config


def get_config():
    c = shapes_detection_config("rcnn")  # the shapes data, ResNet-18 width 16, AdamW, batch 8
    c.data.proposals = "selective_search"
    c.data.max_proposals = 384  # selective search finds at most ~330 boxes in a scene

    c.model.rcnn.crop_size = 32  # objects are 12-52 px; the CNN costs 3x more at 48 px on this CPU
    c.model.rcnn.head = "gap"  # C5 is 1x1 at 32 px: its 128 channels are "pool5"
    c.model.rcnn.num_fc = 1
    c.model.rcnn.fc_dim = 256  # "fc7": the SVMs' features
    c.model.rcnn.dropout_rate = 0.0
    c.model.rcnn.regions_per_image = 16  # 8 images x 16 = 128 regions per batch, 32 foreground (the paper's)
    c.model.rcnn.feature_images = 1500  # SVMs and box regressors train on the first 1500 training scenes
    c.model.rcnn.regions_per_call = 1024

    c.train.num_steps = 2500
    c.train.checkpoint_every = 500
    return c

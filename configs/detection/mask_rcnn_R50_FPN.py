"""Mask R-CNN R50-FPN on COCO 2017 instances at detectron2's full size (800 px short side), for GPU/TPU
hosts: faster_rcnn_R50_FPN.py's recipe plus detectron2's mask head (RoIAlign 14x14 on P2..P5, four
3x3 convs of 256, 2x2 deconv, 28x28 class-specific masks, mask loss weight 1).

    python scripts/train.py --config configs/detection/mask_rcnn_R50_FPN.py --workdir runs/coco_mask_rcnn_R50_FPN \
        --config.data.root=/path/to/coco --config.model.cross_replica_bn=True

tfds' coco/2017 has no instance masks, so the data is a `coco_json` folder (vision_jax/data/coco_json.py):
root/train.json + root/train/ and root/validation.json + root/validation/, e.g. links to COCO's
annotations/instances_{train,val}2017.json and {train,val}2017/; polygons and RLE are rasterised by
pycocotools in the loader. Training ground-truth masks travel cropped to their boxes at 112 x 112
(data.mask_crop_size, TF Model Garden's size: 100 instances x 112 x 112 bytes = 1.25 MB per image instead
of 180 MB canvas-aligned at 1344 x 1344; vision_jax/data/instance_masks.py); evaluation reads the masks
from the json, so evaluation batches carry none. No ImageNet weights: random
initialisation with synchronised BatchNorm and the 3x schedule, as in faster_rcnn_R50_FPN.py.
Measured: not run here (no GPU in this project's machines); the model is built and one train step
traced in tests/test_configs.py. detectron2's reference for this model (ImageNet-pretrained, 1x) is
38.6 box AP / 35.2 mask AP.

Memory (issue 12, acceptance e). Host, per training image (tests/detection/test_mask_rcnn_memory.py on
the real pipeline, a 480 x 640 image with 100 instances): 21.9 MiB = the float32 1344 x 1344 canvas
20.7 MiB + box masks 100 x 112 x 112 = 1.2 MiB + 2.2 kB of boxes and labels; canvas-aligned masks would
have been 100 x 1344 x 1344 = 172 MiB (100 x 672 x 672 = 43 MiB at half resolution, the earlier
setting). Transient while an image is preprocessed: the loader's decoded full masks (100 x 480 x 640
uint8 = 29 MiB) and the crop's two float32 row gathers (100 x 224 x 640 x 4 = 55 MiB each).
Device, the compiled train step at 2 images per device (16 over 8 devices; XLA's memory_analysis on
the CPU backend, `PYTHONPATH=. python tests/detection/mask_rcnn_memory.py`, compiled in 158 s):
arguments 382.7 MiB (parameters, optimizer state, batch), outputs 338.9 MiB (aliased with the donated
state), temporaries 13,305 MiB; Faster R-CNN R50-FPN at the same size: arguments 360.1, outputs 318.8,
temporaries 12,298 MiB (the same batch, box masks unread), so the mask head, its targets and loss add
1.0 GiB of temporaries (8%) and 22.6 MiB of arguments (the mask head's 2.6 M parameters and their
momentum are 21 MiB). A GPU's buffer assignment differs from the CPU backend's: measure there.
"""

import os

from vision_jax.train.config import load_config_file


def get_config():
    # faster_rcnn_R50_FPN.py's recipe, unchanged but the data; Mask R-CNN shares its `model.rcnn` group.
    c = load_config_file(os.path.join(os.path.dirname(__file__), "faster_rcnn_R50_FPN.py"))
    c.model.name = "mask_rcnn"
    c.data.name = "coco_json"
    c.data.with_masks = True  # box masks at data.mask_crop_size = 112 (the default)
    return c

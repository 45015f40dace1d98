"""YOLO v1 with a small ResNet-18 backbone on the generated shapes (128×128, 1–6 objects, 5 classes).

    python scripts/train.py --config configs/detection/shapes_yolov1.py --workdir runs/shapes_yolov1

An 8x8 grid (16 px cells: objects are 12-52 px, and two centres rarely share a cell), 2 boxes per
cell, the paper's head scaled down (128-filter convs on C4, FC 512 with dropout 0.5) and its loss
(lambda_coord 5, lambda_noobj 0.5, confidence target IoU). Same optimiser recipe as shapes_yolov3.py.

Measured on the shared 2-core CPU machine (load average 4-7), test split (500 images), pycocotools:
it does not learn the task in this budget. 1500 steps (7.8 min): AP 0.002, AP50 0.008, AP75 0.000,
AR100 0.124; the head on C5 (2x2 cells into the FC layer) gave AP50 0.008 after 2000 steps (12.4 min)
as well. The class term stays at its uniform-prediction value (~0.8 per object cell) and the
confidences collapse towards 0 under lambda_noobj; boxes do learn (IoU of the responsible predictor
0.46 -> 0.57); dropout 0 changed nothing (AP50 0.005 at step 500, same class term at 750). The FC
head gives every cell its own class weights, so each learns from the few objects that fall in it
(~0.4 per step here). The paper starts from an ImageNet-pretrained backbone; here everything is random.
The paper's linear output layer (--config.model.yolo.linear_outputs=True, darknet's yolov1.cfg)
instead of sigmoid / softmax did not change this: AP50 0.005 at step 500 and the class term at its
uniform value (0.86 per object cell) at step 600, load ~2 (run stopped there).
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="yolo_v1")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: the builder's default size
    c.data.shapes_num_test = config_dict.placeholder(int)
    c.data.image_size = 128  # the scenes' own size: no resizing
    c.data.fixed_size = True
    c.data.random_flip = True
    c.data.max_instances = 8  # scenes hold at most 6 objects

    c.model.backbone = "resnet18"
    c.model.width = 16
    y = c.model.yolo
    y.grid_size = 8
    # A 1x1 conv shared by the cells instead of the paper's FC layers (docstring): on C4 (8x8 at 128²,
    # the grid itself) the head's four convs keep stride 1.
    y.output_layer = "convolutional"
    y.feature = "C4"
    y.head_channels = 128

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 200
    c.optimizer.grad_clip_norm = 10.0

    c.train.num_steps = 4000
    c.train.batch_size = 8
    c.train.eval_batch_size = 50
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return c

"""YOLO v1 with a small ResNet-18 backbone on the generated shapes (128×128, 1–6 objects, 5 classes).

    python scripts/train.py --config configs/detection/shapes_yolov1.py --workdir runs/shapes_yolov1

An 8x8 grid (16 px cells: objects are 12-52 px, and two centres rarely share a cell), 2 boxes per
cell, the paper's loss (lambda_coord 5, lambda_noobj 0.5, confidence target IoU, sqrt w/h, class
sum-squared error in object cells) and the paper's four head convs (128 filters) on C4 (8x8 at 128²,
the grid itself, so none of them strides), but a 1x1 conv output shared by every cell instead of
the paper's FC layers (model.yolo.output_layer='convolutional'). Same optimiser as shapes_yolov3.py.

Why (issue 13). With the paper's FC output (head on C4 with its stride-2 conv, FC 512, dropout 0.5)
this config reached AP 0.002, AP50 0.008, AP75 0.000 after 1500 steps (7.8 min, load 4-7), its class
probabilities at the uniform 0.2 (class term ~0.8 per object cell). The targets and the loss are the
paper's (tests/detection/test_yolo_targets.py against the float64 NumPy reference), and the FC head
can fit the classes: 8 scenes overfit to class accuracy 1.00 at the object cells in 15 steps. But
on a stream of 2000 scenes it never generalises: after 800 steps (batch 8) the class accuracy at
the object cells of 200 held-out scenes is 0.19 (chance 0.20); after 600 steps with FC 2048 and
learning rate 5e-4 it is 0.20 while 8 training scenes reach 0.54, and 0.21 with C3 feeding the FC
layer an 8x8 map. Each cell's class weights learn only from the objects whose centres fall in
that cell (~0.4 per step here), from features learned at the same time (the paper starts from
ImageNet weights): they memorise, they do not generalise. With the shared 1x1 conv and everything
else equal, after 1000 steps: held-out class accuracy 0.50, responsible IoU 0.81 (FC: 0.20, 0.60),
COCO AP50 0.45 on those 200 scenes (FC: 0.007); load 6-10. The checkerboard test in
tests/detection/test_yolo_v1_cells.py keeps it: classes learned in some cells are read in others.

Measured on the shared 2-core CPU machine, test split (500 images), pycocotools, 4000 steps of 8
(4.2 min wall with the four evaluations, load 2.5-4.2, run alone through the lock, commit 70a4d78):
AP 0.528, AP50 0.835, AP75 0.570, APs 0.408, APm 0.636, AR100 0.623; on the way AP50 0.516 / 0.712 /
0.822 at steps 1000 / 2000 / 3000. Train-time class term 0.49 per image at the end (3.2 object cells
per image: ~0.15 per cell against the uniform 0.8), responsible IoU 0.85.
"""

from vision_jax.train.config import shapes_detection_config


def get_config():
    c = shapes_detection_config("yolo_v1", fixed_size=True)  # the shapes data, ResNet-18 width 16, AdamW, batch 8
    y = c.model.yolo
    y.grid_size = 8
    # A 1x1 conv shared by the cells instead of the paper's FC layers (docstring): on C4 (8x8 at 128²,
    # the grid itself) the head's four convs keep stride 1.
    y.output_layer = "convolutional"
    y.feature = "C4"
    y.head_channels = 128

    c.train.num_steps = 4000
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return c

"""R-CNN (Girshick et al. 2014) with VGG-16 on PASCAL VOC 2007, full size, for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/rcnn_vgg16_voc.py --workdir runs/rcnn_vgg16_voc

The paper's recipe (its VGG-16 "O-Net" variant): selective search "fast" (up to 2000 boxes per image, computed
once per split and cached), every region warped to 224x224 with 16 px of context (scaled from 227: 15.8 px)
and the mean colour outside the image, VGG-16 with its pool5 -> fc6 -> fc7 head fine-tuned over 20 classes +
background with SGD at 0.001 on batches of 128 regions (32 foreground at IoU >= 0.5); per-class linear SVMs on
fc7 (liblinear C = 0.001, positive weight 2, bias 10, negatives below IoU 0.3, hard negative mining), box
regression on pool5 (ridge, lambda 1000, IoU > 0.6), per-class NMS at 0.3. Images keep their size (VOC's
long side is 500 px: min_size = max_size = 500 leaves them as they are). Evaluation: VOC2007 test, 11-point
AP50 ('voc07').

This project ships no ImageNet weights: the CNN trains from random initialisation (the paper fine-tunes an
ImageNet model, 66.0 mAP with box regression; expect far less without it). Measured: not run here (no GPU in
this project's machines); the config builds and its CNN's fine-tuning step is traced in tests/test_configs.py
(tfds mock data). Inference time (scripts/lineage_full_size.py, random weights, CPU, 2 cores, load 2-3): 400 s
per 427x640 photo with 2000 proposals (61.4 TFLOP), 52.7x this project's Fast R-CNN VOC config.
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="rcnn")
    c.data.name = "voc/2007"
    c.data.train_split = "train+validation"
    c.data.eval_split = "test"
    c.data.eval_metric = "voc07"
    c.data.image_size = 512
    c.data.min_size = 500
    c.data.max_size = 500
    c.data.random_flip = True
    c.data.max_instances = 64
    c.data.cache = False
    c.data.proposals = "selective_search"
    c.data.max_proposals = 2000

    c.model.backbone = "vgg16"
    c.model.width = 64
    c.model.rcnn.crop_size = 224
    # model.rcnn keeps the paper's other defaults: context 16 px at 227, 'vgg_fc' head (pool5 7x7, fc6 and
    # fc7 of 4096, dropout 0.5), 32 regions per image, SVM and box-regression settings of the MATLAB code.

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.7,)  # the paper's fine-tuning: lr / 10 after 70% of the run
    c.optimizer.decay_factor = 0.1

    c.train.num_steps = 100_000
    c.train.batch_size = 4  # images; x 32 regions = the paper's 128-region batch
    c.train.eval_batch_size = 4
    c.train.log_every = 100
    c.train.checkpoint_every = 5_000
    return c

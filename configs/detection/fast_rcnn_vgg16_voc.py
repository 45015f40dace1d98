"""Fast R-CNN on VGG-16 for PASCAL VOC 2007 (Girshick, 2015), for GPU/TPU hosts.

    python scripts/train.py --config configs/detection/fast_rcnn_vgg16_voc.py --workdir runs/fast_rcnn_vgg16_voc

The paper's VOC recipe: single scale, short side 600 px, long side at most 1000; selective search
'fast' proposals (about 2000 per image, computed once per split in one process per CPU core and cached:
vision_jax/data/proposals.py); RoIs pooled 7x7 (RoIPool) from conv5_3 (stride 16, pool5 unused);
fc6 and fc7 of 4096; mini-batches of 2 images x 64 RoIs, 25% foreground (IoU >= 0.5), background IoU
in [0.1, 0.5); horizontal flips; smooth L1 (sigma 1) with lambda 1; SGD momentum 0.9, weight decay
5e-4, learning rate 1e-3 for 30k iterations then 1e-4 for 10k; test NMS 0.3 per class, detections with
score > 0.05, at most 100 per image. Evaluation: VOC2007 test, 11-point AP50 ('voc07'), the paper's
metric (66.9 mAP for VGG-16 trained on VOC07 trainval). Truncated SVD at test time:
`scripts/evaluate_fast_rcnn_svd.py --workdir DIR --ranks 0,0 --ranks 1024,256` (the paper's ranks).

Differences from the paper: this project ships no ImageNet weights (the paper fine-tunes an ImageNet
VGG-16 with conv1-conv2 frozen; trained from scratch expect far less than 66.9), and the fc6/fc7 of
the classifier are not carried over. Selective search on VOC's ~500 px images takes about a second per
image per core: the 5011 trainval and 4952 test images are searched once, before the first step.
Measured: not run here (no GPU in this project's machines); built and one train step traced in
tests/test_configs.py (tfds mock data), and train and inference traced at the full size in
tests/detection/test_fast_rcnn.py. Inference time (scripts/lineage_full_size.py, random weights, CPU, 2 cores,
load 2-3): 7.6 s per 427x640 photo with 2000 proposals (1.1 TFLOP: VGG-16 on the 1008 px canvas 3.75 s,
the RoI head on 2000 slots 3.8 s), 1/53 of R-CNN's VOC config.
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("detection", model="fast_rcnn")
    c.data.name = "voc/2007"
    c.data.train_split = "train+validation"
    c.data.eval_split = "test"
    c.data.eval_metric = "voc07"
    c.data.image_size = 1008  # the padded canvas: 1000 rounded up to a multiple of the stride 16
    c.data.min_size = 600
    c.data.max_size = 1000
    c.data.random_flip = True
    c.data.max_instances = 64  # VOC images hold at most 42 objects
    c.data.cache = False
    c.data.proposals = "selective_search"
    c.data.max_proposals = 2000
    c.data.selective_search_strategy = "fast"

    c.model.backbone = "vgg16"
    c.model.width = 64
    f = c.model.fast_rcnn  # the other fields keep the paper's defaults (FastRCNNSettings)
    f.feature_map = "conv5_3"
    f.test_nms_threshold = 0.3

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (0.75,)  # 30k of 40k
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 0

    c.train.num_steps = 40_000
    c.train.batch_size = 2
    c.train.eval_batch_size = 2
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.train.checkpoint_every = 2_000
    return c

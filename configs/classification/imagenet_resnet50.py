"""ImageNet-1k classification with ResNet-50 v1.5: the standard 90-epoch recipe, for GPU/TPU hosts.

    python scripts/train.py --config configs/classification/imagenet_resnet50.py --workdir runs/imagenet_r50

Needs the ImageNet files prepared for tfds (`imagenet2012`, manual download). Recipe (Goyal et al.,
torchvision): SGD momentum 0.9, lr 0.1 × batch/256 with 5 warmup epochs then cosine, weight decay
1e-4 on kernels only, label smoothing 0.1, bf16 compute, batch 1024, 224² crops with flips.
Not trained here (2-core CPU); the test suite builds and traces it with jax.eval_shape.
Reference accuracy of this recipe elsewhere: about 76–77% top-1.
"""

from vision_jax.train.config import base_config

EPOCH = 1_281_167 // 1024  # steps per epoch at batch 1024


def get_config():
    c = base_config("classification", model="classifier")
    c.data.name = "imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.cache = False
    c.data.random_flip = True

    c.model.backbone = "resnet50"
    c.model.width = 64
    c.model.stem = "imagenet"
    c.model.dtype = "bfloat16"

    c.loss.label_smoothing = 0.1

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.4
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 5 * EPOCH

    c.train.num_steps = 90 * EPOCH
    c.train.batch_size = 1024
    c.train.eval_batch_size = 1000
    c.train.log_every = 100
    c.train.eval_every = 5 * EPOCH
    c.train.checkpoint_every = EPOCH
    return c

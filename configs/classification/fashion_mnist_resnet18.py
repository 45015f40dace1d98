"""Fashion-MNIST (real data, offline) with a narrow ResNet-18 (width 8, CIFAR stem) at 28×28.

    python scripts/train.py --config configs/classification/fashion_mnist_resnet18.py --workdir runs/fashion_mnist

Reads the files of the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist),
or `--config.data.root=DIR` holding the four `*-ubyte.gz` files. 60k train / 10k test images.
Measured: (filled in below after the run).
"""

from vision_jax.train.config import base_config

STEPS_PER_EPOCH = 60_000 // 128


def get_config():
    c = base_config("classification")
    c.data.name = "fashion_mnist_local"
    c.data.eval_split = "test"
    c.data.image_size = 28
    c.data.random_flip = True
    c.data.random_crop_padding = 2

    c.model.backbone = "resnet18"
    c.model.width = 8
    c.model.stem = "cifar"

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 200

    c.train.num_steps = 6 * STEPS_PER_EPOCH
    c.train.batch_size = 128
    c.train.eval_batch_size = 500
    c.train.log_every = 100
    c.train.eval_every = 2 * STEPS_PER_EPOCH
    c.train.checkpoint_every = STEPS_PER_EPOCH
    return c

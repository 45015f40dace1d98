"""Convolutional autoencoder (the `reconstruction` task) on the generated shapes scenes (128x128, multi).

    python scripts/train.py --config configs/segmentation/shapes_autoencoder.py --workdir runs/shapes_cae

The encoder is the same ResNet-18 (width 16) as configs/segmentation/shapes_fcn8s.py, its C4 output
(stride 16: 8x8x64 numbers for 128x128x3) is the code, and a decoder of four learned x2 upsamplings
reconstructs the image. Metric: mean per-image PSNR (dB) on the test split; pictures of inputs beside
reconstructions go to runs/shapes_cae/pictures. The trained encoder initialises an FCN's backbone
with vision_jax.models.segmentation.autoencoder.copy_encoder_params.
Measured on the shared 2-core CPU machine (load 4-8), test split (500 images): mean PSNR 17.5 dB at
step 500 and 19.0 dB at step 1000 (the run was stopped there to free the CPU); the mean test image
scores 11.1 dB and each image's own mean colour 16.3 dB.
"""

from ml_collections import config_dict

from vision_jax.train.config import base_config


def get_config():
    c = base_config("reconstruction", model="conv_autoencoder")
    c.data.name = "shapes"
    c.data.shapes_variant = "multi"
    c.data.shapes_num_train = config_dict.placeholder(int)  # None: 5000
    c.data.shapes_num_test = config_dict.placeholder(int)  # None: 500
    c.data.image_size = 128
    c.data.random_flip = True

    c.model.backbone = "resnet18"
    c.model.width = 16
    c.model.stem = "imagenet"

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 100

    c.train.num_steps = 1500
    c.train.batch_size = 8
    c.train.eval_batch_size = 100
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

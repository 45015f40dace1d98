"""Full-size FCN-8s on VGG-16 (the paper's model: fc6 7x7 and fc7 as 4096-channel convolutions, dropout
0.5, pool4/pool3 skips) for Oxford-IIIT Pet trimaps at 512x512, for a GPU/TPU host.

    python scripts/train.py --config configs/segmentation/pets_fcn8s_vgg16.py --workdir runs/pets_fcn8s

Classes: background 0, pet 1; the trimap's border band is ignored (vision_jax/data/oxford_pet.py).
The data comes from tfds (downloaded on first use into data.data_dir). Images are resized so the
longer side is 512 and padded (ignore) to 512x512; training adds scale jitter 0.5-2.0 and flips.
Mixed precision (bfloat16 compute, float32 parameters). The paper fine-tunes from ImageNet VGG-16
weights; this config trains from scratch unless such weights are loaded into the backbone first.
Not run on the 2-core CPU machine (134M parameters): tests build it and trace it with jax.eval_shape.
Own data at this size: add --config.data.name=mask_folder --config.data.root=DIR.
"""

from vision_jax.train.config import base_config


def get_config():
    c = base_config("segmentation", model="fcn8s")
    c.data.name = "oxford_iiit_pet"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 512
    c.data.random_flip = True
    c.data.min_scale = 0.5
    c.data.max_scale = 2.0
    c.data.cache = False

    c.model.backbone = "vgg16"
    c.model.width = 64
    c.model.segmentation.head_features = 4096
    c.model.dtype = "bfloat16"

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 500
    c.optimizer.grad_clip_norm = 10.0

    c.train.num_steps = 7000  # ~30 epochs of the 3680 training images
    c.train.batch_size = 16
    c.train.eval_batch_size = 32
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return c

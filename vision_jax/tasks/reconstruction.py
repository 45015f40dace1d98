"""Reconstruction: a convolutional autoencoder (CAE) learns to reproduce its input image.

Model: `vision_jax.models.segmentation.autoencoder.ConvAutoencoder` with the backbone of `model.backbone` as
its encoder (its `model.segmentation.code_feature` output, stride `code_stride`, is the code) and a decoder of
learned x2 upsamplings; the output is a sigmoid, an image in [0, 1].
Loss: mean squared error against the input in [0, 1] (the encoder sees the normalised image).
Metrics: `psnr` (mean per-image PSNR in dB, peak 1; vision_jax.evaluation.reconstruction) and `mse`.
Pictures: each input beside its reconstruction. A trained encoder initialises a segmenter's backbone
with `vision_jax.models.segmentation.autoencoder.copy_encoder_params`.

Any dataset with images works (`shapes`, `image_folder`, tfds datasets); images are resized to
`data.image_size` squared (aspect ratio not kept: the CAE only has to reproduce what it is given).
Config keys read here: `data.image_size`, `data.random_flip`, `model.backbone` and its options,
the `model.segmentation` group (vision_jax.models.segmentation.AutoencoderSettings).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from vision_jax import viz
from vision_jax.data import transforms
from vision_jax.evaluation.reconstruction import ReconstructionEvaluator, per_image_psnr
from vision_jax.models.table import build_model, model_spec


class ReconstructionTask:
    name = "reconstruction"
    DEFAULT_MODEL = "conv_autoencoder"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        c.data.random_flip = True  # horizontal flip in training

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        model_spec(config)  # refuses a model of another task by name

    def build_model(self, info):
        return build_model(self.config, num_classes=0)

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool):
        data = self.config.data
        size = int(data.image_size)

        def fn(example, seed):
            image = tf.image.resize(tf.cast(example["image"], tf.float32), [size, size], antialias=True)
            image = tf.clip_by_value(image, 0.0, 255.0)
            if train and data.random_flip:
                image = tf.image.stateless_random_flip_left_right(image, seed=seed)
            return {"image": transforms.normalize_image(image), "target": image / 255.0}

        return fn

    def loss(self, model, variables, batch, rng, train):
        reconstruction, new_state = model.apply(variables, batch["image"], train=train, mutable=["batch_stats"])
        squared = (reconstruction - batch["target"]) ** 2
        per_image_mse = squared.mean(axis=(1, 2, 3))
        metrics = {"psnr": jnp.mean(-10.0 * jnp.log10(jnp.maximum(per_image_mse, 1e-10)))}
        return per_image_mse.mean(), (metrics, new_state)

    def predict(self, model, variables, batch):
        return {"reconstruction": model.apply(variables, batch["image"], train=False)}

    def make_evaluator(self, info):
        return ReconstructionEvaluator()

    def draw(self, batch, predictions, info):
        """Per image: the input (left) beside its reconstruction (right), captioned with the PSNR."""
        targets = np.asarray(batch["target"], np.float64)
        reconstructions = np.asarray(predictions["reconstruction"], np.float64)
        psnrs = per_image_psnr(reconstructions, targets) if len(targets) else []
        to_uint8 = lambda x: np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
        return [
            viz.side_by_side(
                [to_uint8(target), to_uint8(reconstruction)], ["input", f"reconstruction   PSNR {psnr:.1f} dB"]
            )
            for target, reconstruction, psnr in zip(targets, reconstructions, psnrs)
        ]

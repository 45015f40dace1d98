"""Classification: one class per image; softmax cross-entropy; top-1/top-5 accuracy.

Config keys read here: `data.image_size`, `data.random_flip`, `data.random_crop_padding`
(pad by this many pixels, then crop back at a random place: the CIFAR/ResNet augmentation),
`data.resize_short_side` (> 0: resize keeping the aspect ratio so the short side has this many
pixels, then crop image_size x image_size, centred in evaluation and at random in training:
torchvision's ImageNet evaluation is 256 then 224; 0: resize to image_size x image_size),
`data.mean_rgb` / `data.std_rgb` (normalisation (pixel / 255 - mean) / std: a pretrained model's
own, e.g. (127/255, 128/255) for EfficientNet-Lite's (pixel - 127) / 128),
`model.backbone` and its options (`vision_jax.models.from_config`), the `model.classifier` group
(`vision_jax.models.classifier.ClassifierSettings`: head 'gap' | 'vgg_fc', dropout...),
`loss.label_smoothing`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf

from vision_jax import viz
from vision_jax.data import transforms
from vision_jax.evaluation.classification import ClassificationEvaluator
from vision_jax.models.table import build_model


def require(info, field: str, task: str) -> None:
    if field not in info.has:
        raise ValueError(
            f"Dataset {info.name!r} has no {field!r} field, which the {task} task needs "
            f"(it has: {sorted(info.has)})."
        )


def augment_image(image: tf.Tensor, seed: tf.Tensor, data_config: ml_collections.ConfigDict) -> tf.Tensor:
    """Random pad-and-crop and horizontal flip, stateless (deterministic given `seed` [2])."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    pad = int(data_config.random_crop_padding)
    if pad > 0:
        height, width = image.shape[0], image.shape[1]
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(padded, [height, width, image.shape[2]], seed=seeds[0])
    if data_config.random_flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    return image


def resize_and_crop(image: tf.Tensor, short_side: int, size: int, train: bool, seed: tf.Tensor) -> tf.Tensor:
    """[H, W, C] float -> [size, size, C]: short side resized to `short_side` (aspect kept,
    antialiased bilinear), then a size x size crop, centred unless `train` (then at random)."""
    height, width = transforms.resized_size(tf.shape(image)[0], tf.shape(image)[1], short_side=short_side)
    image = tf.image.resize(image, tf.stack([height, width]), antialias=True)
    channels = image.shape[-1]
    if train:
        crop_seed = tf.random.experimental.stateless_split(seed, 3)[2]
        return tf.image.stateless_random_crop(image, [size, size, channels], seed=crop_seed)
    top, left = (height - size) // 2, (width - size) // 2
    return tf.ensure_shape(tf.image.crop_to_bounding_box(image, top, left, size, size), [size, size, channels])


class ClassificationTask:
    name = "classification"
    DEFAULT_MODEL = "classifier"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        c.data.random_flip = False  # horizontal flip in training
        c.data.random_crop_padding = 0  # pad by this many pixels, crop back at random (training)
        c.data.resize_short_side = 0  # > 0: short side to this, then crop image_size (centre in eval)
        c.data.mean_rgb = transforms.IMAGENET_MEAN_RGB  # normalisation: (pixel / 255 - mean) / std
        c.data.std_rgb = transforms.IMAGENET_STD_RGB
        c.loss.label_smoothing = 0.0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.label_smoothing = float(config.loss.label_smoothing)
        self.mean_rgb = tuple(config.data.get("mean_rgb", transforms.IMAGENET_MEAN_RGB))
        self.std_rgb = tuple(config.data.get("std_rgb", transforms.IMAGENET_STD_RGB))

    def build_model(self, info):
        config = self.config
        require(info, "label", self.name)
        return build_model(config, info.num_classes)

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool):
        config = self.config
        size = config.data.image_size

        short_side = int(config.data.get("resize_short_side", 0))
        if 0 < short_side < size:
            raise ValueError(f"config.data.resize_short_side={short_side} must be 0 or >= data.image_size={size}")
        mean, std = self.mean_rgb, self.std_rgb

        def fn(example, seed):
            image = tf.cast(example["image"], tf.float32)
            if short_side > 0:
                image = resize_and_crop(image, short_side, size, train, seed)
            else:
                image = tf.image.resize(image, [size, size], antialias=True)
            if train:
                image = augment_image(image, seed, config.data)
            image = transforms.normalize_image(image, mean, std)
            return {"image": image, "label": tf.cast(example["label"], tf.int32)}

        return fn

    def loss(self, model, variables, batch, rng, train):
        logits, new_state = model.apply(
            variables, batch["image"], train=train, mutable=["batch_stats"], rngs={"dropout": rng}
        )
        logits = logits.astype(jnp.float32)
        labels = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits.shape[-1]), self.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, labels).mean()
        metrics = {"accuracy": (jnp.argmax(logits, -1) == batch["label"]).mean()}
        return loss, (metrics, new_state)

    def predict(self, model, variables, batch):
        logits = model.apply(variables, batch["image"], train=False)
        return {"logits": logits.astype(jnp.float32)}

    def make_evaluator(self, info):
        return ClassificationEvaluator(info.num_classes)

    def draw(self, batch, predictions, info):
        """Per image: under a green or red band 'correct|WRONG - truth: class' / 'predicted: class score'."""
        pictures = []
        for image, logits, label in zip(batch["image"], predictions["logits"], batch["label"]):
            probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            predicted = int(np.argmax(logits))
            title, band = viz.verdict_title(
                info.class_names[int(label)],
                f"{info.class_names[predicted]} {probabilities[predicted]:.2f}",
                predicted == int(label),
            )
            pictures.append(viz.Canvas(viz.to_uint8(image, self.mean_rgb, self.std_rgb), title, band).finish())
        return pictures

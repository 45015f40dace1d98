"""Localization: one class and one box per image.

The model predicts the box as normalised (cx, cy, w, h) in [0, 1] of the network input;
the loss is softmax cross-entropy plus `loss.box_weight` × (`loss.box_loss` = 'smooth_l1'
on the normalised (cx, cy, w, h), with `loss.smooth_l1_beta`, or 'giou' on the boxes).
Metrics: class `accuracy`, `mean_iou`, `correct_localization` (right class and IoU >= 0.5).

The ground-truth object of an image with several boxes is the largest one (the generated
`shapes` datasets label an image by its largest object).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf

from vision_jax import viz
from vision_jax.data import transforms
from vision_jax.evaluation.localization import LocalizationEvaluator
from vision_jax.models.table import build_model
from vision_jax.ops import boxes as box_ops
from vision_jax.ops import losses
from vision_jax.tasks.classification import require

BOX_LOSSES = ("smooth_l1", "giou")


def largest_box(boxes: tf.Tensor) -> tf.Tensor:
    """[N, 4] (x1, y1, x2, y2) -> [4], the box of largest area."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return tf.gather(boxes, tf.argmax(areas))


class LocalizationTask:
    name = "localization"
    DEFAULT_MODEL = "localizer"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        c.data.random_flip = False  # horizontal flip in training (the box flips with the image)
        c.loss.box_loss = "giou"  # 'giou' or 'smooth_l1'
        c.loss.box_weight = 1.0  # weight of the box loss beside the cross-entropy
        c.loss.smooth_l1_beta = 0.0  # smooth-L1 beta (0 = L1)

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        if config.loss.box_loss not in BOX_LOSSES:
            raise ValueError(f"config.loss.box_loss={config.loss.box_loss!r} is not one of {BOX_LOSSES}")

    def build_model(self, info):
        require(info, "label", self.name)
        require(info, "boxes", self.name)
        return build_model(self.config, info.num_classes)

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool):
        config = self.config
        size = config.data.image_size

        def fn(example, seed):
            image = tf.cast(example["image"], tf.float32)
            shape = tf.cast(tf.shape(image), tf.float32)
            x1, y1, x2, y2 = tf.unstack(largest_box(example["boxes"]) / tf.stack([shape[1], shape[0]] * 2))
            image = tf.image.resize(image, [size, size], antialias=True)
            if train and config.data.random_flip:
                flip = tf.random.stateless_uniform([], seed=seed) < 0.5
                image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
                x1, x2 = tf.where(flip, 1.0 - x2, x1), tf.where(flip, 1.0 - x1, x2)
            box = tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
            return {
                "image": transforms.normalize_image(image),
                "label": tf.cast(example["label"], tf.int32),
                "box": box,  # normalised (cx, cy, w, h)
                "box_xyxy": tf.stack([x1, y1, x2, y2]) * float(size),  # network-input pixels
            }

        return fn

    def loss(self, model, variables, batch, rng, train):
        outputs, new_state = model.apply(variables, batch["image"], train=train, mutable=["batch_stats"])
        logits = outputs["logits"].astype(jnp.float32)
        boxes = outputs["boxes"].astype(jnp.float32)
        class_loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        if self.config.loss.box_loss == "smooth_l1":
            box_loss = losses.smooth_l1_loss(boxes, batch["box"], beta=self.config.loss.smooth_l1_beta).sum(-1).mean()
        else:
            to_xyxy = lambda b: box_ops.box_convert(b, "cxcywh", "xyxy")
            box_loss = losses.giou_loss(to_xyxy(boxes), to_xyxy(batch["box"])).mean()
        loss = class_loss + self.config.loss.box_weight * box_loss
        metrics = {
            "class_loss": class_loss,
            "box_loss": box_loss,
            "accuracy": (jnp.argmax(logits, -1) == batch["label"]).mean(),
        }
        return loss, (metrics, new_state)

    def predict(self, model, variables, batch):
        outputs = model.apply(variables, batch["image"], train=False)
        size = float(self.config.data.image_size)
        return {
            "logits": outputs["logits"].astype(jnp.float32),
            "boxes": box_ops.box_convert(outputs["boxes"].astype(jnp.float32), "cxcywh", "xyxy") * size,
        }

    def make_evaluator(self, info):
        return LocalizationEvaluator()

    def draw(self, batch, predictions, info):
        """Per image: the predicted box (class colour, 'class score') over the true box (striped,
        'class'), under a band 'correct|WRONG - truth: ...' / 'predicted: ..., IoU' (correct: right class
        and IoU >= 0.5, as `correct_localization`), with a legend."""
        pictures = []
        for image, logits, box, label, true_box in zip(
            batch["image"], predictions["logits"], predictions["boxes"], batch["label"], batch["box_xyxy"]
        ):
            probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            predicted, label = int(np.argmax(logits)), int(label)
            iou = float(viz.pairwise_iou(box[None], true_box[None])[0, 0])
            title, band = viz.verdict_title(
                info.class_names[label],
                f"{info.class_names[predicted]} {probabilities[predicted]:.2f}",
                predicted == label and iou >= 0.5,
                f", IoU {iou:.2f}",
            )
            canvas = viz.draw_detections(
                viz.to_uint8(image), box[None], probabilities[predicted][None], np.array([predicted]),
                true_box[None], np.array([label]), info.class_names, title=title, title_rgb=band,
            )
            legend = [*viz.STYLE_LEGEND, *viz.class_legend({predicted, label}, info.class_names)]
            pictures.append(canvas.finish(legend))
        return pictures

"""Semantic segmentation: a class for every pixel.

Models (`config.model.name`, vision_jax.models.table): 'fcn32s', 'fcn16s', 'fcn8s' (FCN on the
backbone of `model.backbone`) and 'segnet' (its own VGG-16-BN-style encoder of `model.width`), from
the segmentation family (vision_jax.models.segmentation; hyper-parameters `model.segmentation.*`). The number of classes is `len(info.segmentation_class_names)` (background included).

Loss: per-pixel softmax cross-entropy averaged over the pixels whose label is not 255 (ignore:
void, borders, padding). Train metric: `pixel_accuracy` over those pixels. Prediction: the argmax
label map, int32 [B, H, W] (compact, for the host-side evaluator). Evaluation: the FCN paper's four
metrics plus per-class IoU (vision_jax.evaluation.segmentation), on the S x S network-input maps
(see vision_jax.data.segmentation_transforms for how images and maps are resized and padded).

Config keys read here: `data.image_size` (S), `data.random_flip`, `data.min_scale`, `data.max_scale`
(training scale jitter); the model's keys are read by its builder.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import viz
from vision_jax.data import segmentation_transforms
from vision_jax.evaluation.segmentation import (
    IGNORE_INDEX,
    SegmentationEvaluator,
    confusion_matrix,
    metrics_from_confusion,
)
from vision_jax.models.table import build_model, model_spec
from vision_jax.ops import losses
from vision_jax.tasks.classification import require


class SegmentationTask:
    name = "segmentation"
    DEFAULT_MODEL = "fcn8s"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        c.data.random_flip = True  # horizontal flip in training (image and map together)
        c.data.min_scale = 1.0  # training scale jitter: a factor in [min_scale, max_scale) of the fit
        c.data.max_scale = 1.0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        model_spec(config)  # refuses a model of another task by name
        if not 0 < config.data.min_scale <= config.data.max_scale:
            raise ValueError(
                f"need 0 < config.data.min_scale={config.data.min_scale} <= "
                f"config.data.max_scale={config.data.max_scale}"
            )

    @staticmethod
    def num_classes(info) -> int:
        require(info, "segmentation", "segmentation")
        return len(info.segmentation_class_names)

    def build_model(self, info):
        return build_model(self.config, self.num_classes(info))

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool):
        require(info, "segmentation", self.name)
        data = self.config.data
        size = int(data.image_size)

        def fn(example, seed):
            segmentation = example["segmentation"]
            if train:
                image, segmentation = segmentation_transforms.train_transform(
                    example["image"],
                    segmentation,
                    seed,
                    size=size,
                    min_scale=float(data.min_scale),
                    max_scale=float(data.max_scale),
                    flip=bool(data.random_flip),
                )
            else:
                image, segmentation = segmentation_transforms.eval_transform(example["image"], segmentation, size=size)
            return {"image": image, "segmentation": segmentation}

        return fn

    def loss(self, model, variables, batch, rng, train):
        logits, new_state = model.apply(
            variables, batch["image"], train=train, mutable=["batch_stats"], rngs={"dropout": rng}
        )
        labels = batch["segmentation"]
        loss = losses.softmax_cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        counted = labels != IGNORE_INDEX
        correct = (jnp.argmax(logits, -1) == labels) & counted
        metrics = {"pixel_accuracy": correct.sum() / jnp.maximum(counted.sum(), 1)}
        return loss, (metrics, new_state)

    def predict(self, model, variables, batch):
        logits = model.apply(variables, batch["image"], train=False)
        return {"labels": jnp.argmax(logits, axis=-1).astype(jnp.int32)}

    def make_evaluator(self, info):
        require(info, "segmentation", self.name)
        return SegmentationEvaluator(info.segmentation_class_names, IGNORE_INDEX)

    def draw(self, batch, predictions, info):
        """Per image: the input, the ground truth and the prediction as colour overlays side by side,
        captioned (the prediction with the image's own mIoU), over a legend of the classes shown.
        Class 0 and ignored pixels are left clear; ignored pixels are grey in the ground truth."""
        names = info.segmentation_class_names
        pictures = []
        for image, truth, predicted in zip(batch["image"], batch["segmentation"], predictions["labels"]):
            ignored = truth == IGNORE_INDEX
            image_miou = metrics_from_confusion(confusion_matrix(truth, predicted, len(names)))["mIoU"]
            shown = sorted({int(k) for k in np.unique(np.concatenate([truth[~ignored], predicted[~ignored]]))} - {0})
            # Upscaled before painting, so region borders are drawn at the picture's resolution.
            image, factor = viz.upscale(viz.to_uint8(image))
            truth_up, predicted_up = viz.upscale(truth)[0], viz.upscale(np.where(ignored, 0, predicted))[0]
            ignored_up, edge_width = truth_up == IGNORE_INDEX, max(2, factor)
            truth_panel = viz.overlay_mask(image, truth_up, edge_width=edge_width)
            truth_panel[ignored_up] = (truth_panel[ignored_up] // 2 + 64).astype(np.uint8)
            predicted_panel = viz.overlay_mask(image, predicted_up, edge_width=edge_width)
            legend = [(("fill", viz.color(k - 1)), names[k]) for k in shown if k < len(names)]
            if ignored.any():
                legend.append((("fill", viz.IGNORE_RGB), "ignored (truth)"))
            pictures.append(viz.side_by_side(
                [image, truth_panel, predicted_panel], ["image", "truth", f"prediction   mIoU {image_miou:.2f}"], legend
            ))
        return pictures

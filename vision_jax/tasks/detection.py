"""Object detection: many (box, class, score) per image, for every detection family.

`config.model.name` picks the model from `vision_jax.models.table.MODELS` ('faster_rcnn',
'faster_rcnn_c4', 'mask_rcnn', 'mask_rcnn_c4', 'ssd', 'yolo_v1', 'yolo_v3'); its hyper-parameters are the group
`config.model.<family>` (rcnn, ssd, yolo) of its family's Settings dataclass. Every detector
follows one contract (vision_jax.models.detector): this task passes the batch's ground truth
through as `targets` and sums the named losses it returns, without knowing the family.
Inputs come from `vision_jax.data.detection_inputs` (`data.*` keys documented there).
Evaluation: COCO metrics with pycocotools on detections mapped back to original image pixels
(`vision_jax.evaluation.coco`), or with `data.eval_metric` 'voc07' / 'voc' PASCAL VOC AP50 with
11-point / all-point interpolation (`vision_jax.evaluation.voc`).

Task keys: `data.eval_metric`; `model.draw_score_threshold` (detections drawn in pictures have at
least this score).

Metrics in training: the model's named losses and metrics, and the batch's dropped degenerate /
excess ground-truth boxes (from the input pipeline).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import viz
from vision_jax.data.detection_inputs import add_detection_data_defaults, make_detection_preprocess
from vision_jax.evaluation.coco import make_coco_evaluator
from vision_jax.evaluation.mask_paste import paste_masks
from vision_jax.models.detector import proposals_from_batch, targets_from_batch
from vision_jax.models.table import build_model, model_spec
from vision_jax.tasks.classification import require


EVAL_METRICS = ("coco", "voc07", "voc")


def image_sizes(image_info: jnp.ndarray, canvas: int) -> jnp.ndarray:
    """[B, 4] (orig h, orig w, scale_y, scale_x) -> float32 [B, 2] (h, w) of the resized image in the
    canvas; all-zero rows (eval padding) get the canvas."""
    sizes = jnp.round(image_info[:, :2] * image_info[:, 2:4])
    return jnp.where(sizes > 0, jnp.minimum(sizes, canvas), canvas).astype(jnp.float32)


class DetectionTask:
    name = "detection"
    DEFAULT_MODEL = "faster_rcnn"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        add_detection_data_defaults(c)
        c.data.eval_metric = "coco"  # 'coco' (pycocotools AP...), 'voc07' (11-point AP50), 'voc' (all-point AP50)
        c.model.draw_score_threshold = 0.5  # detections drawn in pictures have at least this score

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        if config.data.eval_metric not in EVAL_METRICS:
            raise ValueError(f"config.data.eval_metric={config.data.eval_metric!r} is not one of {EVAL_METRICS}")
        model_spec(config)  # refuses a model of another task by name

    def build_model(self, info):
        require(info, "boxes", self.name)
        return build_model(self.config, info.num_classes)

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool, proposal_table=None):
        """The detection input pipeline (detection_inputs.py). With data.proposals, the proposals come from
        `proposal_table` (proposals.ProposalTable keyed by the examples' image ids) when given, else from the
        table of the split (the train or eval split of data.*)."""
        # Evaluation batches carry ground-truth masks only for an evaluator that reads them there
        # (not the COCO evaluator of coco_json data, which reads the json, nor VOC's).
        data = self.config.data
        eval_masks = data.eval_metric == "coco" and data.name != "coco_json"
        return make_detection_preprocess(self.config, info, train, eval_masks=eval_masks, proposal_table=proposal_table)

    def loss(self, model, variables, batch, rng, train):
        outputs, new_state = model.apply(
            variables,
            batch["image"],
            image_sizes(batch["image_info"], self.config.data.image_size),
            targets_from_batch(batch),
            train=True,
            rngs={"sampling": rng},
            mutable=["batch_stats"],
        )
        metrics = {**outputs["losses"], **outputs["metrics"]}
        for key in ("dropped_degenerate_boxes", "dropped_excess_instances"):
            if key in batch:
                metrics[key] = jnp.sum(batch[key]).astype(jnp.float32)
        return sum(outputs["losses"].values()), (metrics, new_state)

    def predict(self, model, variables, batch):
        """Detections in network-input pixels: boxes [B, K, 4], scores, classes, valid [B, K] (and, from
        an instance-segmentation detector, masks [B, K, M, M]: probabilities on each box); the evaluator
        maps them back to original pixels with the batch's image_info and pastes the masks there
        (vision_jax/evaluation/mask_paste.py). The batch's given proposals (data.proposals) are passed
        as `targets`; only a detector that takes them reads them."""
        side = self.config.data.image_size
        sizes = image_sizes(batch["image_info"], side)
        return model.apply(variables, batch["image"], sizes, proposals_from_batch(batch), train=False)

    def make_evaluator(self, info):
        metric = self.config.data.eval_metric
        if metric == "coco":
            return make_coco_evaluator(self.config.data, info, self.config.data.eval_split)
        from vision_jax.evaluation.voc import VocEvaluator  # local: only VOC-style runs need it

        return VocEvaluator(info.class_names, use_07_metric=metric == "voc07")

    def draw(self, batch, predictions, info):
        """The resized image (canvas padding cut off) with the detections scoring at least
        model.draw_score_threshold ('class score') over the striped ground truth ('class'); ground truth
        that none of them found at IoU >= 0.5 with the right class is marked MISSED (viz.draw_detections);
        a legend of the styles and the classes shown. With instance masks, each detection's mask (pasted
        into the resized image, mask_paste.paste_masks) in its own colour, with its outline and caption."""
        threshold = self.config.model.draw_score_threshold
        sizes = np.asarray(image_sizes(jnp.asarray(batch["image_info"]), self.config.data.image_size), np.int64)
        pictures = []
        for b, image in enumerate(batch["image"]):
            keep = np.asarray(predictions["valid"][b], bool) & (np.asarray(predictions["scores"][b]) >= threshold)
            classes = np.asarray(predictions["classes"][b])[keep]
            valid = np.asarray(batch["valid"][b], bool)
            truth_classes = np.asarray(batch["classes"][b])[valid]
            crowd = np.asarray(batch["is_crowd"][b], bool)[valid] if "is_crowd" in batch else None
            height, width = sizes[b]
            masks = None
            if "masks" in predictions:
                boxes = np.asarray(predictions["boxes"][b])[keep]
                masks = np.stack(list(paste_masks(np.asarray(predictions["masks"][b])[keep], boxes, height, width)))
                masks = masks.reshape(len(boxes), height, width)
            canvas = viz.draw_detections(
                viz.to_uint8(np.asarray(image)[:height, :width]),
                np.asarray(predictions["boxes"][b])[keep],
                np.asarray(predictions["scores"][b])[keep],
                classes,
                np.asarray(batch["boxes"][b])[valid],
                truth_classes,
                info.class_names,
                truth_crowd=crowd,
                min_score=threshold,
                masks=masks,
            )
            if masks is None:
                legend = [*viz.STYLE_LEGEND, *viz.class_legend([*classes, *truth_classes], info.class_names)]
            else:  # colours tell instances apart, the captions name their classes
                legend = [*viz.STYLE_LEGEND, (("fill", viz.instance_colour(0)), "mask: one colour per detection")]
            pictures.append(canvas.finish(legend))
        return pictures

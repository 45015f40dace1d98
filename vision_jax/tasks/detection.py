"""Object detection: many (box, class, score) per image; two-stage Faster R-CNN models.

`config.model.name` picks the model from `MODELS` ('faster_rcnn': ResNet-FPN; 'faster_rcnn_c4':
ResNet C4 trunk with res5 as box head). Inputs come from `vision_jax.data.detection_inputs`
(`data.*` keys documented there); the model's training losses are detectron2's (see
`vision_jax.models.faster_rcnn`). Evaluation: COCO metrics with pycocotools on detections mapped
back to original image pixels (`vision_jax.evaluation.coco`), or with `data.eval_metric` 'voc07' /
'voc' PASCAL VOC AP50 with 11-point / all-point interpolation (`vision_jax.evaluation.voc`).

Model keys (`config.model.*`, defaults = detectron2's R50-FPN):
- backbone, width, stem ('imagenet' only: the detectors need strides 4..32), dtype,
  cross_replica_bn: shared backbone keys (vision_jax.models.from_config); norm ('batch' |
  'frozen') and frozen_stages (detectron2's FREEZE_AT) of the ResNet.
- fpn_channels; anchor_sizes (one tuple per RPN level: 5 for FPN P2..P6, 1 for C4);
  anchor_aspect_ratios.
- rpn_fg_iou_threshold, rpn_bg_iou_threshold, rpn_num_samples, rpn_positive_fraction,
  rpn_pre_nms_topk_train / _test (per level), rpn_post_nms_topk_train / _test (per image),
  rpn_nms_threshold.
- roi_pooler_resolution, roi_sampling_ratio, roi_pooler_type ('align' | 'pool', C4 only),
  roi_canonical_size, roi_num_samples, roi_positive_fraction, roi_iou_threshold, roi_append_gt,
  box_head_fc_dim, box_head_num_fc (FPN head).
- test_score_threshold, test_nms_threshold, test_max_detections.
- draw_score_threshold: detections drawn in pictures have at least this score.
- yolo.*: YOLO v1 / v3 keys, model.name='yolo_v1' | 'yolo_v3' (see vision_jax.tasks.detection_yolo).
- ssd.*: SSD300/SSD512 (VGG-16) and ResNet SSD keys, model.name='ssd' (see vision_jax.models.ssd).
Loss keys: loss.rpn_smooth_l1_beta, loss.roi_smooth_l1_beta (0 = L1, detectron2's default).

Metrics in training: the four losses, RPN/RoI sampling statistics, and the batch's dropped
degenerate / excess ground-truth boxes (from the input pipeline).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import viz
from vision_jax.data.detection_inputs import add_detection_data_defaults, make_detection_preprocess
from vision_jax.evaluation.coco import make_coco_evaluator
from vision_jax.models.backbones.resnet import ResNet
from vision_jax.models.faster_rcnn import FasterRCNN, FasterRCNNC4, RoISettings, RPNSettings
from vision_jax.models.from_config import backbone_from_config, compute_dtype
from vision_jax.models.ssd import build_ssd, ssd_config_defaults
from vision_jax.tasks.classification import require
from vision_jax.tasks.detection_yolo import build_yolo_v1, build_yolo_v3, yolo_config_defaults


def rpn_settings(model: ml_collections.ConfigDict, loss: ml_collections.ConfigDict) -> RPNSettings:
    return RPNSettings(
        anchor_sizes=tuple(tuple(float(s) for s in level) for level in model.anchor_sizes),
        aspect_ratios=tuple(float(r) for r in model.anchor_aspect_ratios),
        fg_iou_threshold=model.rpn_fg_iou_threshold,
        bg_iou_threshold=model.rpn_bg_iou_threshold,
        num_samples=model.rpn_num_samples,
        positive_fraction=model.rpn_positive_fraction,
        pre_nms_topk_train=model.rpn_pre_nms_topk_train,
        pre_nms_topk_test=model.rpn_pre_nms_topk_test,
        post_nms_topk_train=model.rpn_post_nms_topk_train,
        post_nms_topk_test=model.rpn_post_nms_topk_test,
        nms_threshold=model.rpn_nms_threshold,
        smooth_l1_beta=loss.rpn_smooth_l1_beta,
    )


def roi_settings(model: ml_collections.ConfigDict, loss: ml_collections.ConfigDict) -> RoISettings:
    return RoISettings(
        pooler_resolution=model.roi_pooler_resolution,
        sampling_ratio=model.roi_sampling_ratio,
        pooler_type=model.roi_pooler_type,
        canonical_size=model.roi_canonical_size,
        num_samples=model.roi_num_samples,
        positive_fraction=model.roi_positive_fraction,
        iou_threshold=model.roi_iou_threshold,
        append_gt=model.roi_append_gt,
        smooth_l1_beta=loss.roi_smooth_l1_beta,
        score_threshold=model.test_score_threshold,
        nms_threshold=model.test_nms_threshold,
        max_detections=model.test_max_detections,
    )


def _resnet(config: ml_collections.ConfigDict) -> ResNet:
    backbone = backbone_from_config(config.model)
    if not isinstance(backbone, ResNet):
        raise ValueError(f"config.model.backbone={config.model.backbone!r}: the detectors need a ResNet")  # noqa: TRY004 (a config value)
    return backbone.clone(norm=config.model.norm, frozen_stages=config.model.frozen_stages)


def build_faster_rcnn(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNN:
    m = config.model
    if len(m.anchor_sizes) != 5:
        raise ValueError(f"config.model.anchor_sizes needs 5 levels (P2..P6) for faster_rcnn, got {m.anchor_sizes}")
    if m.roi_pooler_type != "align":
        raise ValueError(f"config.model.roi_pooler_type={m.roi_pooler_type!r}: faster_rcnn (FPN) pools with 'align'")
    return FasterRCNN(
        backbone=_resnet(config),
        num_classes=num_classes,
        rpn=rpn_settings(m, config.loss),
        roi=roi_settings(m, config.loss),
        dtype=compute_dtype(m),
        fpn_channels=m.fpn_channels,
        fc_dim=m.box_head_fc_dim,
        num_fc=m.box_head_num_fc,
    )


def build_faster_rcnn_c4(config: ml_collections.ConfigDict, num_classes: int) -> FasterRCNNC4:
    m = config.model
    if len(m.anchor_sizes) != 1:
        raise ValueError(f"config.model.anchor_sizes needs 1 level (C4) for faster_rcnn_c4, got {m.anchor_sizes}")
    resnet = _resnet(config)
    if len(resnet.stage_sizes) != 4:
        raise ValueError(f"config.model.backbone={m.backbone!r} must have 4 stages for the C4 split")
    return FasterRCNNC4(
        backbone=resnet.clone(stage_sizes=tuple(resnet.stage_sizes[:3])),
        num_classes=num_classes,
        rpn=rpn_settings(m, config.loss),
        roi=roi_settings(m, config.loss),
        dtype=compute_dtype(m),
        res5_block=resnet.block,
        res5_blocks=resnet.stage_sizes[3],
        res5_width=resnet.width * 8,
        res5_norm=m.norm,
    )


MODELS: dict[str, Callable] = {
    "faster_rcnn": build_faster_rcnn,
    "faster_rcnn_c4": build_faster_rcnn_c4,
    "ssd": build_ssd,
    "yolo_v1": build_yolo_v1,
    "yolo_v3": build_yolo_v3,
}


EVAL_METRICS = ("coco", "voc07", "voc")


def image_sizes(image_info: jnp.ndarray, canvas: int) -> jnp.ndarray:
    """[B, 4] (orig h, orig w, scale_y, scale_x) -> float32 [B, 2] (h, w) of the resized image in the
    canvas; all-zero rows (eval padding) get the canvas."""
    sizes = jnp.round(image_info[:, :2] * image_info[:, 2:4])
    return jnp.where(sizes > 0, jnp.minimum(sizes, canvas), canvas).astype(jnp.float32)


class DetectionTask:
    name = "detection"

    @staticmethod
    def add_config_defaults(c: ml_collections.ConfigDict) -> None:
        add_detection_data_defaults(c)
        c.data.eval_metric = "coco"  # 'coco' (pycocotools AP...), 'voc07' (11-point AP50), 'voc' (all-point AP50)
        m = c.model
        m.name = "faster_rcnn"
        m.backbone = "resnet50"
        m.norm = "batch"  # 'frozen' with pretrained weights (detectron2's FrozenBN)
        m.frozen_stages = 0  # detectron2's FREEZE_AT (2 with pretrained weights)
        m.fpn_channels = 256
        m.anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
        m.anchor_aspect_ratios = (0.5, 1.0, 2.0)
        m.rpn_fg_iou_threshold = 0.7
        m.rpn_bg_iou_threshold = 0.3
        m.rpn_num_samples = 256
        m.rpn_positive_fraction = 0.5
        m.rpn_pre_nms_topk_train = 2000
        m.rpn_pre_nms_topk_test = 1000
        m.rpn_post_nms_topk_train = 1000
        m.rpn_post_nms_topk_test = 1000
        m.rpn_nms_threshold = 0.7
        m.roi_pooler_resolution = 7
        m.roi_sampling_ratio = 2
        m.roi_pooler_type = "align"
        m.roi_canonical_size = 224.0
        m.roi_num_samples = 512
        m.roi_positive_fraction = 0.25
        m.roi_iou_threshold = 0.5
        m.roi_append_gt = True
        m.box_head_fc_dim = 1024
        m.box_head_num_fc = 2
        m.test_score_threshold = 0.05
        m.test_nms_threshold = 0.5
        m.test_max_detections = 100
        m.draw_score_threshold = 0.5
        m.ssd = ssd_config_defaults()  # model.name='ssd' (vision_jax.models.ssd)
        m.yolo = yolo_config_defaults()  # YOLO v1/v3 keys: vision_jax/tasks/detection_yolo.py
        c.loss.rpn_smooth_l1_beta = 0.0
        c.loss.roi_smooth_l1_beta = 0.0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        if config.data.eval_metric not in EVAL_METRICS:
            raise ValueError(f"config.data.eval_metric={config.data.eval_metric!r} is not one of {EVAL_METRICS}")
        if config.model.name not in MODELS:
            raise ValueError(
                f"config.model.name={config.model.name!r} is not a detection model; known: {sorted(MODELS)}"
            )

    def build_model(self, info):
        require(info, "boxes", self.name)
        return MODELS[self.config.model.name](self.config, info.num_classes)

    def init_inputs(self, info):
        size = self.config.data.image_size
        return {"images": np.zeros((1, size, size, 3), np.float32)}

    def preprocess(self, info, train: bool):
        return make_detection_preprocess(self.config, info, train)

    def loss(self, model, variables, batch, rng, train):
        outputs, new_state = model.apply(
            variables,
            batch["image"],
            image_sizes(batch["image_info"], self.config.data.image_size),
            train=True,
            gt_boxes=batch["boxes"],
            gt_classes=batch["classes"],
            gt_valid=batch["valid"],
            gt_is_crowd=batch["is_crowd"],
            rngs={"sampling": rng},
            mutable=["batch_stats"],
        )
        metrics = {**outputs["losses"], **outputs["metrics"]}
        for key in ("dropped_degenerate_boxes", "dropped_excess_instances"):
            if key in batch:
                metrics[key] = jnp.sum(batch[key]).astype(jnp.float32)
        return outputs["loss"], (metrics, new_state)

    def predict(self, model, variables, batch):
        """Detections in network-input pixels: boxes [B, K, 4], scores, classes, valid [B, K]; the
        evaluator maps them back to original pixels with the batch's image_info."""
        return model.apply(
            variables, batch["image"], image_sizes(batch["image_info"], self.config.data.image_size), train=False
        )

    def make_evaluator(self, info):
        metric = self.config.data.eval_metric
        if metric == "coco":
            return make_coco_evaluator(self.config.data, info, self.config.data.eval_split)
        from vision_jax.evaluation.voc import VocEvaluator  # local: only VOC-style runs need it

        return VocEvaluator(info.class_names, use_07_metric=metric == "voc07")

    def draw(self, batch, predictions, info):
        """The resized image (canvas padding cut off) with detections scoring at least
        model.draw_score_threshold, captioned 'class score', over the ground truth in white."""
        threshold = self.config.model.draw_score_threshold
        sizes = np.asarray(image_sizes(jnp.asarray(batch["image_info"]), self.config.data.image_size), np.int64)
        pictures = []
        for b, image in enumerate(batch["image"]):
            keep = np.asarray(predictions["valid"][b], bool) & (np.asarray(predictions["scores"][b]) >= threshold)
            classes = np.asarray(predictions["classes"][b])[keep]
            scores = np.asarray(predictions["scores"][b])[keep]
            truth = np.asarray(batch["boxes"][b])[np.asarray(batch["valid"][b], bool)]
            height, width = sizes[b]
            pictures.append(
                viz.draw_boxes(
                    viz.to_uint8(np.asarray(image)[:height, :width]),
                    np.asarray(predictions["boxes"][b])[keep],
                    [f"{info.class_names[k]} {s:.2f}" for k, s in zip(classes, scores)],
                    classes,
                    reference_boxes=truth,
                )
            )
        return pictures

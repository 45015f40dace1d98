"""COCO detection metrics with pycocotools' COCOeval, on predictions mapped back to original pixels.

`CocoEvaluator.update(predictions, batch)` takes one batch (NumPy, leading axis B; rows with
`batch["example_valid"] == False` are skipped):
- predictions: `boxes` [B, K, 4] (x1, y1, x2, y2) in network-input pixels, `scores` [B, K], `classes`
  [B, K] int in 0..C-1, and `valid` [B, K] bool (or `num_detections` [B]); optional instance masks, either
  `masks` [B, K, M, M] probabilities on each detection's box (Mask R-CNN's output, the detector contract's
  'masks'), pasted into the ORIGINAL image on the box mapped back to original pixels with detectron2's
  paste, threshold 0.5 (vision_jax/evaluation/mask_paste.py), or `canvas_masks` [B, K, Hm, Wm]
  probabilities or 0/1 aligned with the padded network input (mask pixel (r, c) covers input pixels
  [c W/Wm, (c+1) W/Wm) x [r H/Hm, (r+1) H/Hm), H x W = the batch's image size), thresholded at 0.5.
- batch: `image_info` [B, 4] = (original height, original width, scale_y, scale_x) and `image_id` [B]
  (detection_inputs.py); for ground truth from batches also `boxes` [B, M, 4], `classes` [B, M],
  `valid` [B, M], `is_crowd` [B, M] and, for mask metrics, `masks` [B, M, Hm', Wm'] like the predictions'.

Boxes map back as x / scale_x, y / scale_y and are clipped to the original image (detectron2's
detector_postprocess); canvas-aligned masks map back by taking, for each original pixel, the mask pixel
under its centre. COCO results use (x, y, w, h).

Ground truth, two sources:
- from the batches (default): the ground truth the pipeline produced, mapped back the same way. Areas
  (for APs/APm/APl) are box areas, or mask areas when masks are evaluated. It differs from an official
  evaluation where the pipeline cut objects (beyond `max_instances`, boxes without area) or where COCO's
  annotated `area` differs from the box area. Images are keyed by their order of arrival, so repeated
  image ids (mock data) are harmless.
- from a COCO json (`ground_truth=` a path or pycocotools COCO; `make_coco_evaluator` does this for
  `coco_json` data, with the json's annotations as the loader reads them: boxes clipped to the image,
  boxes without area left out; all instances, not only the first max_instances); `image_id` must be the json's id and `category_ids` the
  json's ids. Only images that went through `update` are evaluated (COCOeval params.imgIds).

`result()` -> `AP` (IoU .50:.05:.95), `AP50`, `AP75`, `APs`, `APm`, `APl`, `AR100` (COCOeval.stats
0-5 and 8), and `mask_AP`, ... when masks were given (a prediction's area for `mask_APs/m/l` is its mask's
area: segm results are evaluated without their `bbox`). Like pycocotools, a metric without any ground
truth in its range (e.g. `APl` with no large object) is -1.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vision_jax.evaluation.mask_paste import paste_masks

METRIC_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}


def boxes_to_original(boxes: np.ndarray, image_info: np.ndarray) -> np.ndarray:
    """[K, 4] xyxy network-input pixels -> float64 [K, 4] xyxy original pixels, clipped to the image.

    image_info: [4] = (original height, original width, scale_y, scale_x).
    """
    height, width, scale_y, scale_x = (float(v) for v in image_info)
    out = np.asarray(boxes, np.float64) / np.array([scale_x, scale_y, scale_x, scale_y])
    return np.clip(out, 0.0, np.array([width, height, width, height]))


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] (x1, y1, x2, y2) -> [K, 4] (x, y, w, h), COCO's box format."""
    boxes = np.asarray(boxes, np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def masks_to_original(masks: np.ndarray, image_info: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Canvas-aligned masks [K, Hm, Wm] -> bool [K, h, w] in original pixels (module docstring).

    input_size: (H, W) of the padded network input that the masks span.
    """
    height, width, scale_y, scale_x = image_info
    height, width = int(round(height)), int(round(width))
    masks = np.asarray(masks)
    rows = np.floor((np.arange(height) + 0.5) * scale_y * masks.shape[-2] / input_size[0]).astype(np.int64)
    cols = np.floor((np.arange(width) + 0.5) * scale_x * masks.shape[-1] / input_size[1]).astype(np.int64)
    rows, cols = np.minimum(rows, masks.shape[-2] - 1), np.minimum(cols, masks.shape[-1] - 1)
    return masks[:, rows][:, :, cols] >= 0.5


def encode_masks(masks) -> list[dict]:
    """bool [K, h, w] (or an iterable of bool [h, w], encoded one at a time) -> COCO compressed RLEs
    (counts as str, JSON-ready)."""
    rles = []
    for mask in masks:
        rle = mask_utils.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
        rle["counts"] = rle["counts"].decode("ascii")
        rles.append(rle)
    return rles


def prediction_masks(predictions: Mapping[str, np.ndarray], b: int, keep: np.ndarray, info: np.ndarray,
                     input_size) -> list[dict] | None:  # fmt: skip
    """RLEs in original pixels of image b's kept detections (module docstring), None without masks."""
    if "masks" in predictions:
        height, width = int(round(info[0])), int(round(info[1]))
        boxes = boxes_to_original(np.asarray(predictions["boxes"][b])[keep], info)
        return encode_masks(paste_masks(np.asarray(predictions["masks"][b])[keep], boxes, height, width))
    if "canvas_masks" in predictions:
        return encode_masks(masks_to_original(np.asarray(predictions["canvas_masks"][b])[keep], info, input_size))
    return None


def detection_valid_mask(predictions: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool [B, K]: which detections are real, from `valid` or `num_detections`."""
    if "valid" in predictions:
        return np.asarray(predictions["valid"], bool)
    if "num_detections" in predictions:
        k = np.asarray(predictions["scores"]).shape[1]
        return np.arange(k)[None, :] < np.asarray(predictions["num_detections"])[:, None]
    raise ValueError("predictions need 'valid' [B, K] or 'num_detections' [B]")


def _build_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoEvaluator:
    """Accumulates detections (and batch ground truth) and evaluates them with COCOeval.

    class_names: the C class names. category_ids: the dataset's id of each class (results files and
    json ground truth use them); None -> 1..C. ground_truth: None (from batches), or a COCO json path /
    pycocotools COCO object (then category_ids are required).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        category_ids: Sequence[int] | None = None,
        ground_truth: str | COCO | None = None,
    ):
        self.class_names = tuple(class_names)
        if category_ids is None:
            if ground_truth is not None:
                raise ValueError("CocoEvaluator: ground_truth from a json needs the json's category_ids")
            category_ids = range(1, len(self.class_names) + 1)
        self.category_ids = np.asarray(list(category_ids), np.int64)
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(f"CocoEvaluator: {len(self.category_ids)} category_ids for {len(self.class_names)} classes")
        if isinstance(ground_truth, str):
            with contextlib.redirect_stdout(io.StringIO()):
                ground_truth = COCO(ground_truth)
        self.json_ground_truth = ground_truth
        if ground_truth is not None:
            missing = set(self.category_ids.tolist()) - set(ground_truth.getCatIds())
            if missing:
                raise ValueError(f"CocoEvaluator: category_ids {sorted(missing)} are not in the ground-truth json")
        self.detections: list[dict] = []  # keyed by the evaluation image key
        self.dataset_image_ids: dict[int, int] = {}  # evaluation key -> dataset image id
        self.gt_images: list[dict] = []
        self.gt_annotations: list[dict] = []
        self.with_masks: bool | None = None

    def _image_key(self, image_id: int) -> int:
        if self.json_ground_truth is None:
            return len(self.dataset_image_ids) + 1  # order of arrival (COCO ids start at 1)
        if image_id not in self.json_ground_truth.imgs:
            raise ValueError(f"CocoEvaluator: image_id {image_id} is not in the ground-truth json")
        if image_id in self.dataset_image_ids:
            raise ValueError(f"CocoEvaluator: image_id {image_id} was added twice (json ground truth keys images by id)")
        return image_id

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        """Adds one batch (module docstring)."""
        rows = np.flatnonzero(np.asarray(batch.get("example_valid", np.ones(len(batch["image_info"]), bool)), bool))
        detection_valid = detection_valid_mask(predictions)
        with_masks = "masks" in predictions or "canvas_masks" in predictions
        if self.with_masks is None:
            self.with_masks = with_masks
        elif self.with_masks != with_masks:
            raise ValueError("CocoEvaluator: some batches have predicted masks and others not")
        input_size = tuple(np.asarray(batch["image"]).shape[1:3]) if "image" in batch else None
        if "canvas_masks" in predictions and input_size is None:
            raise ValueError("CocoEvaluator: canvas-aligned masks need batch['image'] for the network-input size")
        for b in rows:
            info = np.asarray(batch["image_info"][b], np.float64)
            key = self._image_key(int(batch["image_id"][b]))
            self.dataset_image_ids[key] = int(batch["image_id"][b])
            keep = np.flatnonzero(detection_valid[b])
            boxes = xyxy_to_xywh(boxes_to_original(np.asarray(predictions["boxes"][b])[keep], info))
            scores = np.asarray(predictions["scores"][b], np.float64)[keep]
            classes = np.asarray(predictions["classes"][b], np.int64)[keep]
            if np.any((classes < 0) | (classes >= len(self.class_names))):
                raise ValueError(f"CocoEvaluator: predicted classes {np.unique(classes)} outside 0..{len(self.class_names) - 1}")
            rles = prediction_masks(predictions, b, keep, info, input_size)
            for i in range(len(keep)):
                detection = {"image_id": key, "category_id": int(self.category_ids[classes[i]]),
                             "bbox": [float(v) for v in boxes[i]], "score": float(scores[i])}
                if rles is not None:
                    detection["segmentation"] = rles[i]
                self.detections.append(detection)
            if self.json_ground_truth is None:
                self._add_batch_ground_truth(batch, b, key, info, input_size)

    def _add_batch_ground_truth(self, batch, b: int, key: int, info: np.ndarray, input_size) -> None:
        self.gt_images.append({"id": key, "height": int(round(info[0])), "width": int(round(info[1]))})
        real = np.flatnonzero(np.asarray(batch["valid"][b], bool))
        boxes = xyxy_to_xywh(boxes_to_original(np.asarray(batch["boxes"][b])[real], info))
        classes = np.asarray(batch["classes"][b], np.int64)[real]
        crowd = np.asarray(batch["is_crowd"][b], bool)[real] if "is_crowd" in batch else np.zeros(len(real), bool)
        rles, areas = None, boxes[:, 2] * boxes[:, 3]
        if self.with_masks:
            if "masks" not in batch or input_size is None:
                raise ValueError("CocoEvaluator: masks were predicted but the batch has no ground-truth 'masks' "
                                 "(or no 'image' for their network-input size)")
            masks = masks_to_original(np.asarray(batch["masks"][b])[real], info, input_size)
            rles, areas = encode_masks(masks), masks.sum(axis=(1, 2)).astype(np.float64)
        for i in range(len(real)):
            annotation = {"id": len(self.gt_annotations) + 1, "image_id": key,
                          "category_id": int(self.category_ids[classes[i]]), "bbox": [float(v) for v in boxes[i]],
                          "area": float(areas[i]), "iscrowd": int(crowd[i])}
            if rles is not None:
                annotation["segmentation"] = rles[i]
            self.gt_annotations.append(annotation)

    def ground_truth(self) -> COCO:
        """The pycocotools COCO object the detections are evaluated against."""
        if self.json_ground_truth is not None:
            return self.json_ground_truth
        categories = [{"id": int(c), "name": n} for c, n in zip(self.category_ids, self.class_names)]
        return _build_coco({"images": self.gt_images, "annotations": self.gt_annotations, "categories": categories})

    def _evaluate(self, ground_truth: COCO, iou_type: str) -> np.ndarray:
        detections = [dict(d) for d in self.detections]  # loadRes adds keys in place
        # Each type sees only its own geometry: loadRes takes a result's area from `bbox` whenever the
        # field is there, so a segm result that kept its box would be sized by the box for APs/m/l
        # (detectron2 drops the box before segm evaluation, as here).
        dropped = "segmentation" if iou_type == "bbox" else "bbox"
        detections = [{k: v for k, v in d.items() if k != dropped} for d in detections]
        with contextlib.redirect_stdout(io.StringIO()):
            if detections:
                results = ground_truth.loadRes(detections)
            else:  # loadRes cannot take an empty list; an empty result set scores 0 where there is ground truth
                results = _build_coco({"images": ground_truth.dataset["images"], "annotations": [],
                                       "categories": ground_truth.dataset["categories"]})
            evaluator = COCOeval(ground_truth, results, iou_type)
            evaluator.params.imgIds = sorted(self.dataset_image_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator.stats

    def result(self) -> dict[str, float]:
        """COCO metrics (module docstring). Raises ValueError if no image was added."""
        if not self.dataset_image_ids:
            raise ValueError("CocoEvaluator.result: no images were evaluated (all rows had example_valid=False?)")
        ground_truth = self.ground_truth()
        stats = self._evaluate(ground_truth, "bbox")
        out = {name: float(stats[i]) for name, i in METRIC_STATS.items()}
        if self.with_masks:
            stats = self._evaluate(ground_truth, "segm")
            out.update({f"mask_{name}": float(stats[i]) for name, i in METRIC_STATS.items()})
        return out

    def results_json(self) -> list[dict]:
        """The detections as a COCO results list: image_id = the dataset's id, category_id = the
        dataset's category id, bbox (x, y, w, h) in original pixels, score (+ segmentation RLE)."""
        return [{**d, "image_id": self.dataset_image_ids[d["image_id"]]} for d in self.detections]

    def artifacts(self) -> dict[str, list[dict]]:
        """Files the train loop and scripts/evaluate.py write beside the metrics (eval/)."""
        return {"detections_coco.json": self.results_json()}


def save_coco_results(path: str, detections: Sequence[dict]) -> None:
    """Writes a COCO results JSON (a list of {image_id, category_id, bbox, score[, segmentation]})."""
    with open(path, "w") as f:
        json.dump(list(detections), f)


def make_coco_evaluator(data_config, info, split: str) -> CocoEvaluator:
    """The CocoEvaluator for a run's data: json ground truth and ids for `coco_json`, COCO's category
    ids for `coco/2017`, ground truth from batches otherwise."""
    from vision_jax.data import coco_json, detection_tfds  # local: evaluation needs no TensorFlow otherwise

    name = data_config.get("name")
    if name == "coco_json":
        root = data_config.get("root")
        return CocoEvaluator(info.class_names, category_ids=coco_json.category_ids(root, split),
                             ground_truth=coco_json.evaluation_ground_truth(root, split))
    return CocoEvaluator(info.class_names, category_ids=detection_tfds.category_ids(name))

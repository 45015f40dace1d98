"""CocoEvaluator against hand-computed COCO AP and against pycocotools run directly in original pixels."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vision_jax.evaluation.coco import CocoEvaluator, encode_masks, masks_to_original, save_coco_results
from vision_jax.evaluation.mask_paste import paste_mask

NAMES = ("a", "b", "c")


def network_batch(images: list[dict], max_instances: int, with_image: tuple[int, int] | None = None) -> dict:
    """A detection batch (detection_inputs.py layout) from images given in ORIGINAL pixels:
    each {h, w, sy, sx, image_id, boxes [n, 4] xyxy, classes [n], crowd [n]}; boxes go to the network
    input by x * sx, y * sy (float64; scales float32-representable as image_info stores them, so that
    mapping back is exact to rounding)."""
    b = len(images)
    batch = {"boxes": np.zeros((b, max_instances, 4)), "classes": -np.ones((b, max_instances), np.int32),
             "valid": np.zeros((b, max_instances), bool), "is_crowd": np.zeros((b, max_instances), bool),
             "image_info": np.zeros((b, 4), np.float32), "image_id": np.zeros(b, np.int32),
             "example_valid": np.ones(b, bool)}
    for i, im in enumerate(images):
        n = len(im["boxes"])
        batch["boxes"][i, :n] = np.asarray(im["boxes"], np.float64) * [im["sx"], im["sy"], im["sx"], im["sy"]]
        batch["classes"][i, :n] = im["classes"]
        batch["valid"][i, :n] = True
        batch["is_crowd"][i, :n] = im.get("crowd", np.zeros(n, bool))
        batch["image_info"][i] = [im["h"], im["w"], im["sy"], im["sx"]]
        batch["image_id"][i] = im["image_id"]
    if with_image is not None:
        batch["image"] = np.zeros((b,) + with_image + (3,), np.float32)
    return batch


def detections(images: list[dict], per_image: list[dict], k: int) -> dict:
    """Predictions [B, K] from per-image {boxes (original pixels), scores, classes}."""
    b = len(images)
    out = {"boxes": np.zeros((b, k, 4)), "scores": np.zeros((b, k)), "classes": np.zeros((b, k), np.int32),
           "valid": np.zeros((b, k), bool)}
    for i, (im, det) in enumerate(zip(images, per_image)):
        n = len(det["boxes"])
        out["boxes"][i, :n] = np.asarray(det["boxes"], np.float64) * [im["sx"], im["sy"], im["sx"], im["sy"]]
        out["scores"][i, :n], out["classes"][i, :n], out["valid"][i, :n] = det["scores"], det["classes"], True
    return out


def float32_scales(im: dict) -> dict:
    """Scales as image_info stores them (float32), so network boxes map back exactly."""
    return {**im, "sy": float(np.float32(im["sy"])), "sx": float(np.float32(im["sx"]))}


def pycocotools_stats(images: list[dict], per_image: list[dict], category_ids=(1, 2, 3)) -> np.ndarray:
    """Reference: pycocotools on json-style ground truth and results written in original pixels."""
    gt = {"images": [{"id": i + 1, "height": im["h"], "width": im["w"]} for i, im in enumerate(images)],
          "categories": [{"id": c} for c in category_ids], "annotations": []}
    results = []
    for i, (im, det) in enumerate(zip(images, per_image)):
        for box, cls, crowd in zip(im["boxes"], im["classes"], im.get("crowd", np.zeros(len(im["boxes"]), bool))):
            x1, y1, x2, y2 = (float(v) for v in box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": category_ids[cls],
                                      "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": int(crowd)})
        for box, score, cls in zip(det["boxes"], det["scores"], det["classes"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": i + 1, "category_id": category_ids[cls], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def as_metrics(stats: np.ndarray) -> dict:
    return {name: float(stats[i]) for name, i in {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}.items()}


def random_images(rng, count: int) -> list[dict]:
    images = []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(40, 300, 2))
        n = int(rng.integers(0, 7))
        x1, y1 = rng.uniform(0, w - 4, n), rng.uniform(0, h - 4, n)
        boxes = np.stack([x1, y1, x1 + rng.uniform(2, w - x1), y1 + rng.uniform(2, h - y1)], axis=1).reshape(-1, 4)
        images.append(float32_scales({"h": h, "w": w, "sy": rng.uniform(0.3, 3), "sx": rng.uniform(0.3, 3), "image_id": 100 + i,
                                      "boxes": boxes, "classes": rng.integers(0, 3, n), "crowd": rng.random(n) < 0.15}))
    return images


def evaluate(images, per_image, k: int = 10, **kwargs) -> CocoEvaluator:
    evaluator = CocoEvaluator(NAMES, **kwargs)
    for start in range(0, len(images), 3):  # batches of 3 (the last may be shorter)
        chunk = images[start:start + 3]
        evaluator.update(detections(chunk, per_image[start:start + 3], k), network_batch(chunk, 8))
    return evaluator


def test_predictions_equal_to_the_ground_truth_give_ap_one(rng, seed):
    images = random_images(rng, 7)
    per_image = []
    for im in images:
        real = np.flatnonzero(~im["crowd"])
        order = rng.permutation(real)
        per_image.append({"boxes": im["boxes"][order], "scores": rng.uniform(0.1, 1, len(order)), "classes": im["classes"][order]})
    result = evaluate(images, per_image).result()
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert result[name] == pytest.approx(1.0, abs=1e-12), f"{name}={result[name]} seed={seed}"
    for name in ("APs", "APm", "APl"):  # 1, or -1 where no object of that size exists
        assert result[name] in (pytest.approx(1.0), -1.0), f"{name}={result[name]} seed={seed}"


def test_hand_computed_case_equals_pycocotools():
    """One image (scaled by (sy, sx) = (0.5, 2) into the network), one class, three 10x10 ground-truth
    boxes g1 = [0,0,10,10], g2 = [20,0,30,10], g3 = [40,0,50,10] (all small: area 100 < 32^2).
    Detections by score: d1 = g1 (IoU 1), d2 = g2 shifted 1 px (IoU 90/110 = 0.818), d3 far from all
    (false positive), d4 = g3 shifted 3 px (IoU 70/130 = 0.538).
    COCO interpolates precision at 101 recalls r = k/100 (precision made non-increasing from the right;
    0 beyond the last recall reached):
      t = .50 (1 threshold): TP TP FP TP -> recall 1/3 2/3 2/3 1, precision 1 1 2/3 3/4:
          r <= 2/3 (67 points) -> 1, r > 2/3 (34 points) -> 3/4: AP = (67 + 25.5) / 101 = 92.5/101
      t = .55 ... .80 (6 thresholds): TP TP FP FP -> r <= 2/3: 1 (67 points), else 0: AP = 67/101
      t = .85 .90 .95 (3 thresholds): TP FP FP FP -> r <= 1/3: 1 (34 points), else 0: AP = 34/101
    AP = (92.5 + 6*67 + 3*34) / 1010 = 596.5/1010;  AP50 = 92.5/101;  AP75 = 67/101;  APs = AP;
    APm = APl = -1 (no such objects);  AR100 = mean recall = (1 + 6*(2/3) + 3*(1/3)) / 10 = 0.6."""
    image = {"h": 20, "w": 60, "sy": 0.5, "sx": 2.0, "image_id": 7,
             "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float), "classes": np.zeros(3, int)}
    dets = {"boxes": np.array([[0, 0, 10, 10], [21, 0, 31, 10], [55, 12, 60, 20], [43, 0, 53, 10]], float),
            "scores": np.array([0.9, 0.8, 0.7, 0.6]), "classes": np.zeros(4, int)}
    by_hand = {"AP": 596.5 / 1010, "AP50": 92.5 / 101, "AP75": 67 / 101, "APs": 596.5 / 1010, "APm": -1.0, "APl": -1.0, "AR100": 0.6}
    ours = evaluate([image], [dets]).result()
    reference = as_metrics(pycocotools_stats([image], [dets]))
    for name, value in by_hand.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
        assert reference[name] == pytest.approx(value, abs=1e-12), name


def test_detections_inside_crowd_regions_are_ignored():
    """A crowd region C = [0,0,100,100] and an object A = [120,0,140,20] in a 200x200 image; detection
    d1 (score .95) = [10,10,30,30] lies inside C, d2 (score .9) = A.
    Crowd handled: d1 matches C as an ignore region (COCO's crowd IoU = intersection / detection area = 1),
    so only d2 counts: TP over 1 object, AP = 1 at every threshold.
    C not crowd: d1 has IoU 400/10000 = 0.04 with C -> false positive first; d2 TP; 2 objects:
    recall 0, 1/2 with precision 0, 1/2 -> 51 recall points r <= 1/2 at 1/2: AP = 25.5/101 everywhere."""
    boxes = np.array([[0, 0, 100, 100], [120, 0, 140, 20]], float)
    dets = {"boxes": np.array([[10, 10, 30, 30], [120, 0, 140, 20]], float), "scores": np.array([0.95, 0.9]),
            "classes": np.zeros(2, int)}
    image = {"h": 200, "w": 200, "sy": 0.75, "sx": 0.5, "image_id": 1, "boxes": boxes, "classes": np.zeros(2, int)}
    crowd = evaluate([{**image, "crowd": np.array([True, False])}], [dets]).result()
    not_crowd = evaluate([{**image, "crowd": np.array([False, False])}], [dets]).result()
    assert crowd["AP"] == pytest.approx(1.0, abs=1e-12) and crowd["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert not_crowd["AP"] == pytest.approx(25.5 / 101, abs=1e-12)


def test_random_predictions_match_pycocotools_in_original_pixels(rng, seed):
    images = random_images(rng, 8)
    per_image = []
    for im in images:
        n = int(rng.integers(0, 9))
        jitter = rng.normal(0, 6, (len(im["boxes"]), 4))
        near = (im["boxes"] + jitter)[: n // 2]  # detections near objects (some good, some poor matches)
        x1, y1 = rng.uniform(0, im["w"] - 4, n - len(near)), rng.uniform(0, im["h"] - 4, n - len(near))
        far = np.stack([x1, y1, x1 + rng.uniform(2, 60, len(x1)), y1 + rng.uniform(2, 60, len(x1))], axis=1)
        boxes = np.clip(np.concatenate([near.reshape(-1, 4), far]), 0, [im["w"], im["h"], im["w"], im["h"]])
        per_image.append({"boxes": boxes, "scores": rng.uniform(0, 1, len(boxes)), "classes": rng.integers(0, 3, len(boxes))})
    ours = evaluate(images, per_image).result()
    reference = as_metrics(pycocotools_stats(images, per_image))
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), f"{name}: {ours[name]} vs pycocotools {value}, seed={seed}"


def test_results_json_has_dataset_ids_and_original_xywh(rng, tmp_path, seed):
    images = random_images(rng, 4)
    per_image = [{"boxes": im["boxes"], "scores": np.linspace(0.9, 0.5, len(im["boxes"])), "classes": im["classes"]} for im in images]
    evaluator = evaluate(images, per_image, category_ids=(17, 4, 60))
    path = tmp_path / "detections.json"
    save_coco_results(str(path), evaluator.results_json())
    saved = json.loads(path.read_text())
    expected = [(im["image_id"], (17, 4, 60)[c], [b[0], b[1], b[2] - b[0], b[3] - b[1]], s)
                for im, det in zip(images, per_image) for b, c, s in zip(det["boxes"], det["classes"], det["scores"])]
    assert len(saved) == len(expected), seed
    for got, (image_id, category_id, xywh, score) in zip(saved, expected):
        assert (got["image_id"], got["category_id"]) == (image_id, category_id)
        np.testing.assert_allclose(got["bbox"], xywh, atol=1e-6, err_msg=f"seed={seed}")
        assert got["score"] == pytest.approx(score)


def test_masks_map_back_by_the_pixel_centre_and_equal_masks_score_one(rng, seed):
    # Reference mapping, written as a loop: original pixel (r, c) reads the canvas mask at
    # (floor((r + .5) * sy * Hm / H), floor((c + .5) * sx * Wm / W)).
    h, w, sy, sx, canvas, mask_res = 13, 9, np.float32(1.7), np.float32(2.3), (32, 32), (16, 16)
    masks = (rng.random((2,) + mask_res) < 0.5).astype(np.uint8)
    mapped = masks_to_original(masks, np.array([h, w, sy, sx]), canvas)
    for r in range(h):
        for c in range(w):
            row = int(np.floor((r + 0.5) * float(sy) * mask_res[0] / canvas[0]))
            col = int(np.floor((c + 0.5) * float(sx) * mask_res[1] / canvas[1]))
            np.testing.assert_array_equal(mapped[:, r, c], masks[:, row, col] == 1, err_msg=f"seed={seed}")
    # Ground-truth masks predicted back (as probabilities) give mask AP 1.
    images = random_images(rng, 3)
    batch = network_batch(images, 8, with_image=canvas)
    batch["masks"] = (rng.random((3, 8) + mask_res) < 0.5).astype(np.uint8)
    k = 8
    predictions = {"boxes": batch["boxes"], "scores": np.tile(np.linspace(1, 0.3, k), (3, 1)), "classes": np.maximum(batch["classes"], 0),
                   "valid": batch["valid"] & ~batch["is_crowd"], "canvas_masks": batch["masks"] * 0.8 + 0.1}
    evaluator = CocoEvaluator(NAMES)
    evaluator.update(predictions, batch)
    result = evaluator.result()
    assert result["mask_AP"] in (pytest.approx(1.0), -1.0) and result["AP"] in (pytest.approx(1.0), -1.0), f"{result} seed={seed}"


def test_no_detections_score_zero_and_no_images_is_an_error(rng):
    images = random_images(rng, 3)
    images[0] = {**images[0], "boxes": np.array([[1.0, 1.0, 30.0, 30.0]]), "classes": np.array([1]), "crowd": np.array([False])}
    result = evaluate(images, [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}] * 3).result()
    assert result["AP"] == 0.0 and result["AR100"] == 0.0
    with pytest.raises(ValueError, match="no images were evaluated"):
        CocoEvaluator(NAMES).result()
    with pytest.raises(ValueError, match="3 category_ids for 2 classes"):
        CocoEvaluator(("a", "b"), category_ids=(1, 2, 3))


def square_mask(size: int, x1: int, y1: int, x2: int, y2: int, frame: bool = False) -> np.ndarray:
    """uint8 [size, size]: 1 on [x1, x2) x [y1, y2), or only on that rectangle's 1-pixel border (frame)."""
    mask = np.zeros((size, size), np.uint8)
    mask[y1:y2, x1:x2] = 1
    if frame:
        mask[y1 + 1:y2 - 1, x1 + 1:x2 - 1] = 0
    return mask


def test_mask_size_ranges_use_the_mask_area_not_the_box_area():
    """The segm size split (APs/m/l) sizes each prediction by its mask, not by its box.
    One 200x200 image at scale 1, one class; ground truth g1 = solid [10,30)^2 (mask area 400: small) and
    g2 = solid [60,180)^2 (14400: large). Detections by score: d1 = a 1-pixel frame on [0,150)^2 with box
    [0,0,150,150] (mask area 596: small; box area 22500: large; IoU ~0.01 with g2: a false positive),
    d2 = g1, d3 = g2.
    By mask area: small: d1 FP, d2 TP over 1 object -> precision 1/2 at recall 1: mask_APs = 0.5;
    large: d1 out of range and unmatched (ignored), d3 TP: mask_APl = 1; no medium object: mask_APm = -1.
    By box area (the defect): d1 would be large -> mask_APs = 1 and mask_APl = 0.5."""
    size = 200
    masks = np.stack([square_mask(size, 10, 10, 30, 30), square_mask(size, 60, 60, 180, 180)])
    predicted = np.stack([square_mask(size, 0, 0, 150, 150, frame=True), masks[0], masks[1]]).astype(np.float32)
    image = {"h": size, "w": size, "sy": 1.0, "sx": 1.0, "image_id": 3,
             "boxes": np.array([[10, 10, 30, 30], [60, 60, 180, 180]], float), "classes": np.zeros(2, int)}
    dets = {"boxes": np.array([[0, 0, 150, 150], [10, 10, 30, 30], [60, 60, 180, 180]], float),
            "scores": np.array([0.9, 0.8, 0.7]), "classes": np.zeros(3, int)}
    batch = network_batch([image], 4, with_image=(size, size))
    batch["masks"] = np.zeros((1, 4, size, size), np.uint8)
    batch["masks"][0, :2] = masks
    predictions = detections([image], [dets], 4)
    predictions["canvas_masks"] = np.zeros((1, 4, size, size), np.float32)
    predictions["canvas_masks"][0, :3] = predicted
    evaluator = CocoEvaluator(NAMES)
    evaluator.update(predictions, batch)
    ours = evaluator.result()

    # pycocotools run the right way: RLE ground truth with mask areas, segm results without a bbox.
    encode = lambda m: mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    gt = {"images": [{"id": 1, "height": size, "width": size}], "categories": [{"id": c} for c in (1, 2, 3)],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": encode(m),
                           "area": float(m.sum()), "bbox": list(mask_utils.toBbox(encode(m))), "iscrowd": 0}
                          for i, m in enumerate(masks)]}
    results = [{"image_id": 1, "category_id": 1, "segmentation": encode(m), "score": float(s)}
               for m, s in zip(predicted, dets["scores"])]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        reference_eval = COCOeval(coco, coco.loadRes(results), "segm")
        reference_eval.evaluate()
        reference_eval.accumulate()
        reference_eval.summarize()
    reference = as_metrics(reference_eval.stats)
    by_hand = {"APs": 0.5, "APm": -1.0, "APl": 1.0}
    for name, value in by_hand.items():
        assert reference[name] == pytest.approx(value, abs=1e-12), name
        assert ours[f"mask_{name}"] == pytest.approx(value, abs=1e-12), name
    for name, value in reference.items():
        got = ours[f"mask_{name}"]
        assert got == pytest.approx(value, abs=1e-12), f"mask_{name}: {got} vs pycocotools {value}"


def test_box_masks_are_pasted_at_the_original_resolution(rng, seed):
    """Mask R-CNN's box-relative masks [B, K, M, M]: each is pasted (detectron2's paste, threshold 0.5) into
    the ORIGINAL image on its box mapped back to original pixels, not onto the network canvas. Ground
    truth made of those same pastes scores mask AP 1."""
    images = random_images(rng, 2)
    k = 6
    batch = network_batch(images, k, with_image=(64, 64))
    box_masks = rng.uniform(0.6, 1, (2, k, 14, 14)).astype(np.float32)  # mostly in, never empty
    for b, i in np.ndindex(2, k):  # with a random 5 x 5 hole each
        row, col = rng.integers(0, 10, 2)
        box_masks[b, i, row:row + 5, col:col + 5] = rng.uniform(0, 0.5)
    predictions = {"boxes": batch["boxes"], "scores": np.tile(np.linspace(1, 0.3, k), (2, 1)),
                   "classes": np.maximum(batch["classes"], 0), "valid": batch["valid"], "masks": box_masks}
    expected = []
    for b in range(2):
        info = batch["image_info"][b].astype(np.float64)
        height, width = int(round(info[0])), int(round(info[1]))
        boxes = np.clip(batch["boxes"][b] / [info[3], info[2], info[3], info[2]], 0, [width, height, width, height])
        expected.append([paste_mask(box_masks[b, i], boxes[i], height, width) for i in np.flatnonzero(batch["valid"][b])])
    batch["masks"] = np.zeros((2, k, 64, 64), np.uint8)  # unused: ground truth comes from the pastes below
    evaluator = CocoEvaluator(NAMES)
    evaluator.update(predictions, batch)
    got = [mask_utils.decode(d["segmentation"]).astype(bool) for d in evaluator.detections]
    want = [m for per_image in expected for m in per_image]
    assert len(got) == len(want), f"seed={seed}"
    for g, w in zip(got, want):
        assert g.shape == w.shape  # the original image's size
        np.testing.assert_array_equal(g, w, err_msg=f"seed={seed}")
    # Ground truth = the pastes (with the crowd flags dropped): every detection matches its own mask.
    evaluator.gt_annotations = [
        {**a, "segmentation": encode_masks([m])[0], "area": float(m.sum()), "iscrowd": 0}
        for a, m in zip(evaluator.gt_annotations, want)
    ]
    result = evaluator.result()
    assert result["mask_AP"] in (pytest.approx(1.0), -1.0), f"{result} seed={seed}"

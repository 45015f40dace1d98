"""Selective search and proposals as data: the search against planted objects and a NumPy canonical
order, the files (detectron2 pickle, npz) against hand-written references, the cache, and the
pipeline's proposal transforms against the float64 NumPy reference of the ground-truth boxes."""
from __future__ import annotations

import builtins
import pickle
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from test_data_detection_inputs import detection_config, flipped, info, keep_aspect_size, random_example, reference, run_many
from vision_jax.data import detection_inputs, proposals, selective_search as ss


def iou(a, b):
    return proposals._iou(np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4))


def planted_image(rng, height=96, width=128):
    """Smooth background with two solid rectangles, one in each half of the image with at least 4 px of
    background between them and the middle (they must not overlap: a rectangle painted over the other
    leaves a visible region that is not its box; the earlier version did so for 16% of seeds at 48 x 64);
    returns (image, their boxes)."""
    image = np.full((height, width, 3), rng.integers(60, 90, 3), np.uint8)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    boxes, half = [], width // 2
    for left, colour in ((0, (220, 30, 30)), (half, (30, 200, 40))):
        w = int(rng.integers(18, min(40, half - 4) + 1))
        h = int(rng.integers(18, min(40, height - 4) + 1))
        x = left + 2 + int(rng.integers(0, half - w - 4 + 1))  # 2 px inside each side of the half
        y = int(rng.integers(0, height - h + 1))
        image[y:y + h, x:x + w] = colour
        boxes.append([x, y, x + w, y + h])
    return image, np.asarray(boxes, np.float64)


def test_selective_search_finds_planted_objects_deterministically(rng, seed):
    image, truth = planted_image(rng)
    boxes = ss.selective_search(image)
    again = ss.selective_search(image)
    np.testing.assert_array_equal(boxes, again, err_msg=f"seed={seed}: two runs differ")
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 2
    assert iou(truth, boxes).max(1).min() >= 0.9, f"seed={seed}: a planted rectangle was not proposed"
    # Canonical: unique rows, sorted by (y1, x1, y2, x2), inside the image, no side below the minimum.
    keys = [tuple(b) for b in boxes[:, [1, 0, 3, 2]].tolist()]
    assert keys == sorted(set(keys)), f"seed={seed}"
    assert (boxes >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= ss.default_min_box_side(128)).all()


def test_selective_search_scales_back_from_the_segmentation_width(rng, seed):
    image, truth = planted_image(rng, 48, 64)
    big = np.repeat(np.repeat(image, 4, 0), 4, 1)  # 192 x 256: segmented at width 64 when max_width=64
    boxes = ss.selective_search(big, max_width=64, min_box_side=4)
    assert iou(truth * 4, boxes).max(1).min() >= 0.85, f"seed={seed}"
    assert boxes[:, 2].max() <= 256 and boxes[:, 3].max() <= 192


def test_cap_keeps_a_fixed_sorted_subset_of_the_unique_boxes(rng, seed):
    raw = rng.integers(0, 30, (400, 4)).astype(np.float32)
    raw = np.concatenate([raw, raw[:50]])  # duplicates
    unique = sorted(set(map(tuple, raw.tolist())), key=lambda b: (b[1], b[0], b[3], b[2]))
    full = ss.canonical_boxes(raw[rng.permutation(len(raw))], max_proposals=10_000)
    np.testing.assert_array_equal(full, np.asarray(unique, np.float32), err_msg=f"seed={seed}")
    capped = ss.canonical_boxes(raw[rng.permutation(len(raw))], max_proposals=100)
    np.testing.assert_array_equal(capped, ss.canonical_boxes(raw, max_proposals=100), err_msg="input order matters")
    assert len(capped) == 100 and set(map(tuple, capped.tolist())) <= set(unique)
    assert [tuple(b) for b in capped[:, [1, 0, 3, 2]].tolist()] == sorted(tuple(b) for b in capped[:, [1, 0, 3, 2]].tolist())


def test_missing_contrib_names_the_wheel(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="5.0.0", __file__="/x/cv2.so"))
    with pytest.raises(ss.MissingOpenCVContribError, match="has no ximgproc.*uninstall.*opencv-python.*install opencv-contrib-python-headless"):
        ss.selective_search(np.zeros((8, 8, 3), np.uint8))
    real_import = builtins.__import__
    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError("no cv2"))
                        if name == "cv2" else real_import(name, *a, **k))
    with pytest.raises(ss.MissingOpenCVContribError, match="not installed.*opencv-contrib-python-headless"):
        ss.require_ximgproc()


# --- files ---------------------------------------------------------------------------------------------
def test_detectron2_pickle_is_read_sorted_cut_and_checked(tmp_path, rng, seed, caplog):
    ids = [5, 9, 12]
    boxes = [rng.uniform(0, 20, (6, 2)) for _ in ids]
    xywh = [np.concatenate([b, rng.uniform(1, 10, (6, 2))], 1).astype(np.float32) for b in boxes]
    xywh[1][2] = [3, 3, 0, 5]  # zero width: degenerate
    xywh[2][:] = [1, 1, -1, 2]  # every box degenerate: the whole image instead
    logits = [rng.normal(size=6).astype(np.float32) for _ in ids]
    path = tmp_path / "props.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ids": ids + [77], "boxes": xywh + [xywh[0]], "objectness_logits": logits + [logits[0]],
                     "bbox_mode": 1}, f)
    table = proposals.read_proposal_file(str(path), ids, {12: (30, 40)}, max_proposals=4)
    for index, image_id in enumerate(ids[:2]):  # reference: xywh -> xyxy, drop degenerate, top 4 by logit
        xyxy = np.concatenate([xywh[index][:, :2], xywh[index][:, :2] + xywh[index][:, 2:]], 1)
        good = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        order = np.argsort(-logits[index][good])[:4]
        got_boxes, got_scores = table.lookup(image_id)
        np.testing.assert_allclose(got_boxes, xyxy[good][order], rtol=1e-6, err_msg=f"seed={seed}")
        np.testing.assert_allclose(got_scores, logits[index][good][order], err_msg=f"seed={seed}")
    np.testing.assert_array_equal(table.lookup(12)[0], [[0, 0, 40, 30]])
    assert (table.dropped_degenerate, table.whole_image_fallbacks, table.ignored_unknown_ids) == (7, 1, 1)
    assert "not in the split" in caplog.text and "whole image" in caplog.text
    with pytest.raises(ValueError, match=r"no proposals for 1 image.*\[40\]"):
        proposals.read_proposal_file(str(path), ids + [40], None, max_proposals=4)
    with pytest.raises(ValueError, match="none of its 4 image ids"):
        proposals.read_proposal_file(str(path), [1000], None, max_proposals=4)
    with pytest.raises(ValueError, match="does not exist"):
        proposals.read_proposal_file(str(tmp_path / "nope.pkl"), ids, None, max_proposals=4)


def test_npz_round_trip(tmp_path, rng, seed):
    table = proposals.ProposalTable(
        {i: rng.uniform(0, 50, (int(rng.integers(1, 9)), 4)).astype(np.float32) for i in (3, 1, 8)}, {}, "memory")
    for i, b in table.boxes.items():
        b[:, 2:] = b[:, :2] + 1 + b[:, 2:]  # non-degenerate
        table.scores[i] = np.sort(rng.normal(size=len(b)).astype(np.float32))[::-1].copy()
    path = tmp_path / "p.npz"
    proposals.write_proposal_npz(str(path), table)
    back = proposals.read_proposal_file(str(path), [1, 3, 8], None, max_proposals=100)
    for i in (1, 3, 8):
        np.testing.assert_array_equal(back.lookup(i)[0], table.boxes[i], err_msg=f"seed={seed}")
        np.testing.assert_array_equal(back.lookup(i)[1], table.scores[i])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".proposals-")]  # no temporary left


def test_selective_search_finding_nothing_gives_the_whole_image(monkeypatch, caplog):
    monkeypatch.setattr(ss, "selective_search", lambda image, **kw: np.zeros((0, 4), np.float32))
    ds = tf.data.Dataset.from_tensor_slices({"image": np.zeros((2, 6, 10, 3), np.uint8), "image_id": np.array([4, 7])})
    table = proposals.compute_selective_search(ds, num_workers=1)
    np.testing.assert_array_equal(table.lookup(7)[0], [[0, 0, 10, 6]])
    assert table.whole_image_fallbacks == 2 and "had no proposal" in caplog.text


def test_split_is_searched_in_processes_once_then_read_from_the_cache(multi_shapes_config, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from vision_jax.data import datasets

    data = detection_config().data
    data.update(multi_shapes_config.to_dict())
    data.update(proposals="selective_search", proposals_cache_dir=str(tmp_path), proposal_workers=2, max_proposals=50)
    table = proposals.proposal_table(data, "test")
    path = proposals.cache_path(data, "test")
    assert path.startswith(str(tmp_path)) and [p.name for p in tmp_path.iterdir()] == [path.split("/")[-1]]
    ds, _ = datasets.load(data, "test")
    examples = list(tfds.as_numpy(ds))
    assert sorted(table.boxes) == sorted(int(e["image_id"]) for e in examples)
    for example in examples[:4]:  # reference: the search run here, serially
        expected = ss.selective_search(example["image"], max_proposals=50)
        np.testing.assert_array_equal(table.lookup(int(example["image_id"]))[0], expected)
    monkeypatch.setattr(proposals, "compute_selective_search", lambda *a, **k: pytest.fail("recomputed"))
    assert proposals.proposal_table(data, "test") is table  # the same process: read once
    monkeypatch.setattr(proposals, "_TABLES", {})  # another process: from the file
    cached = proposals.proposal_table(data, "test")
    for image_id in table.boxes:
        np.testing.assert_array_equal(cached.lookup(image_id)[0], table.lookup(image_id)[0])
    data.max_proposals = 40  # other settings: another cache file
    assert proposals.cache_path(data, "test") != path


# --- the pipeline --------------------------------------------------------------------------------------
def test_proposals_are_resized_flipped_clipped_and_padded_like_boxes(rng, seed):
    size, max_proposals = 64, 24
    config = detection_config(image_size=size, min_size=int(rng.integers(16, 64)), max_size=64, max_instances=12,
                              proposals="selective_search", max_proposals=max_proposals)
    examples = [random_example(rng, *(int(v) for v in rng.integers(12, 90, 2)), int(rng.integers(0, 8))) for _ in range(8)]
    for index, example in enumerate(examples):
        example["image_id"] = np.int64(100 + index)
    table = proposals.ProposalTable({}, {}, "memory")
    for example in examples:  # random proposals, partly outside the image, some beyond max_proposals
        h, w = example["image"].shape[:2]
        n = int(rng.integers(1, 30))
        x = np.sort(rng.uniform(-0.2 * w, 1.2 * w, (n, 2)), 1)
        y = np.sort(rng.uniform(-0.2 * h, 1.2 * h, (n, 2)), 1)
        table.boxes[int(example["image_id"])] = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(np.float32)
        table.scores[int(example["image_id"])] = rng.normal(size=n).astype(np.float32)
    for train in (True, False):
        fn = detection_inputs.make_detection_preprocess(config, info(), train=train, proposal_table=table)
        outs = run_many(fn, examples, [[seed % 2**31, i] for i in range(len(examples))])
        for example, out in zip(examples, outs):
            new_h, new_w = keep_aspect_size(*example["image"].shape[:2], config.data.min_size, 64)
            as_truth = dict(example, boxes=table.boxes[int(example["image_id"])][:max_proposals],
                            classes=np.zeros(min(max_proposals, len(table.boxes[int(example["image_id"])])), np.int64),
                            is_crowd=np.zeros(min(max_proposals, len(table.boxes[int(example["image_id"])])), bool))
            candidates = {f: reference(as_truth, new_h, new_w, f, size, max_proposals) for f in (False, True)}
            flip = flipped(out, candidates)
            assert train or not flip
            expected = candidates[flip]
            np.testing.assert_allclose(out["proposals"], expected["boxes"], atol=1e-3, err_msg=f"seed={seed}")
            np.testing.assert_array_equal(out["proposal_valid"], expected["valid"], err_msg=f"seed={seed}")
            scores = table.scores[int(example["image_id"])][:max_proposals]
            kept_scores = scores[_kept(table.boxes[int(example["image_id"])][:max_proposals], new_h, new_w, example)]
            np.testing.assert_allclose(out["proposal_scores"][: len(kept_scores)], kept_scores, err_msg=f"seed={seed}")
            assert (out["proposal_scores"][len(kept_scores):] == 0).all()
            # The ground truth takes the same flip as the proposals.
            np.testing.assert_allclose(out["boxes"], reference(example, new_h, new_w, flip, size, 12)["boxes"], atol=1e-3)


def _kept(boxes, new_h, new_w, example):
    h, w = example["image"].shape[:2]
    scaled = np.clip(boxes.astype(np.float64) * [new_w / w, new_h / h, new_w / w, new_h / h], 0, [new_w, new_h, new_w, new_h])
    return (scaled[:, 2] > scaled[:, 0]) & (scaled[:, 3] > scaled[:, 1])


def test_proposals_refuse_ssd_augment():
    with pytest.raises(ValueError, match="ssd_augment does not transform proposals"):
        detection_inputs.DetectionInputSettings.from_config(detection_config(proposals="x.npz", ssd_augment=True).data)

"""Fast R-CNN (Girshick, 2015): RoI sampling with the background band [0.1, 0.5) and the multi-task loss
against float64 NumPy, the truncated SVD against NumPy's low-rank product, the contract on given
proposals, the settings refactor, and a short overfit on a few shapes scenes measured by pycocotools."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rcnn_reference as ref

from vision_jax.models.rcnn import box_head as roi_box_head
from vision_jax.models.rcnn.fast_rcnn import FastRCNNBoxHead, truncated_svd_variables
from vision_jax.models.rcnn.settings import FastRCNNSettings, RCNNSettings, RoIHeadSettings

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def scene(rng, num_gt=3, num_proposals=80, size=96):
    """Valid ground truth (plus 2 padding rows) and proposals, many near the objects, some padding."""
    xy = rng.uniform(0, size - 40, (num_gt, 2))
    gt = np.concatenate([xy, xy + rng.uniform(12, 40, (num_gt, 2))], 1)
    gt = np.concatenate([gt, np.zeros((2, 4))]).astype(np.float32)
    gt_valid = np.arange(num_gt + 2) < num_gt
    gt_classes = np.where(gt_valid, rng.integers(0, 4, num_gt + 2), -1).astype(np.int32)
    near = gt[rng.integers(0, num_gt, num_proposals // 2)] + rng.normal(0, 6, (num_proposals // 2, 4))
    xy = rng.uniform(0, size - 10, (num_proposals - len(near), 2))
    far = np.concatenate([xy, xy + rng.uniform(4, 50, xy.shape)], 1)
    proposals = np.concatenate([near, far]).astype(np.float32)
    proposals[:, 2:] = np.maximum(proposals[:, 2:], proposals[:, :2] + 1)
    proposal_valid = rng.uniform(size=num_proposals) < 0.9
    return proposals, proposal_valid, gt, gt_classes, gt_valid


def test_sampling_takes_foreground_at_half_and_background_in_the_band(rng, seed):
    num_samples, fraction = 64, 0.25
    proposals, proposal_valid, gt, gt_classes, gt_valid = scene(rng)
    sample = functools.partial(roi_box_head.roi_targets, num_classes=4, iou_threshold=0.5, num_samples=num_samples,
                               positive_fraction=fraction, append_gt=True, bg_iou_low=0.1)
    out = jax.jit(sample)(proposals, proposal_valid, gt, gt_classes, gt_valid, np.zeros(5, bool), jax.random.key(seed))
    boxes, classes, valid, targets = (np.asarray(out[k]) for k in ("boxes", "classes", "valid", "box_targets"))
    # Reference: the candidates (valid proposals + valid ground truth) labelled by their best IoU, float64.
    candidates = np.concatenate([proposals, gt[gt_valid]]).astype(np.float64)
    eligible = np.concatenate([proposal_valid, np.ones(gt_valid.sum(), bool)])
    overlaps = ref.iou(gt[gt_valid].astype(np.float64), candidates)
    best, best_gt = overlaps.max(0), overlaps.argmax(0)
    fg, bg = eligible & (best >= 0.5), eligible & (best >= 0.1) & (best < 0.5)
    num_fg = min(fg.sum(), int(num_samples * fraction))
    num_bg = min(bg.sum(), num_samples - num_fg)
    assert valid.sum() == num_fg + num_bg and valid[: num_fg + num_bg].all(), f"seed={seed}"
    assert (classes[:num_fg] < 4).all() and (classes[num_fg : num_fg + num_bg] == 4).all(), f"seed={seed}"
    for row in range(num_fg + num_bg):  # each sample is a candidate of its kind, with its class and targets
        match = np.flatnonzero(np.abs(candidates - boxes[row]).max(1) < 1e-4)
        assert len(match), f"seed={seed}: sampled box {boxes[row]} is no candidate"
        index = match[0]
        if row < num_fg:
            assert fg[index] and classes[row] == gt_classes[gt_valid][best_gt[index]], f"seed={seed}"
            expected = ref.encode(gt[gt_valid][best_gt[index]][None].astype(np.float64), candidates[index][None], WEIGHTS)
            np.testing.assert_allclose(targets[row], expected[0], rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")
        else:
            assert bg[index], f"seed={seed}: background IoU {best[index]} outside [0.1, 0.5)"
            assert (targets[row] == 0).all()
    rows = [tuple(np.round(b, 3)) for b in boxes[valid]]
    assert len(set(rows)) == len(rows), f"seed={seed}: a candidate sampled twice"


def test_sampling_without_ground_truth_draws_nothing_below_the_band(rng, seed):
    proposals, proposal_valid, gt, gt_classes, _ = scene(rng)
    out = roi_box_head.roi_targets(proposals, proposal_valid, gt, gt_classes, np.zeros(5, bool), np.zeros(5, bool),
                                   jax.random.key(seed), num_classes=4, iou_threshold=0.5, num_samples=16,
                                   positive_fraction=0.25, append_gt=True, bg_iou_low=0.1)
    assert not np.asarray(out["valid"]).any()  # every IoU is 0 < 0.1: nothing to sample


def smooth_l1(x, beta):
    x = np.abs(x)
    return np.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta)


def test_multi_task_loss_matches_numpy(rng, seed):
    num_rois, num_classes = 40, 5
    logits = rng.normal(0, 2, (num_rois, num_classes + 1))
    deltas = rng.normal(0, 1.5, (num_rois, num_classes, 4))
    classes = rng.integers(0, num_classes + 1, num_rois)  # num_classes = background
    valid = rng.uniform(size=num_rois) < 0.85
    targets = np.where((classes < num_classes)[:, None], rng.normal(0, 1.5, (num_rois, 4)), 0.0)
    out = roi_box_head.box_head_losses(jnp.asarray(logits, jnp.float32), jnp.asarray(deltas, jnp.float32),
                                       jnp.asarray(classes, jnp.int32), jnp.asarray(valid),
                                       jnp.asarray(targets, jnp.float32), smooth_l1_beta=1.0)
    # Girshick (2015) eq. 1-3: L = -log p_u + lambda [u >= 1] sum_i smoothL1(t^u_i - v_i), lambda = 1,
    # averaged over the sampled RoIs (here "u >= 1" is "u is not background", which is last).
    log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    count = valid.sum()
    expected_cls = -log_p[np.arange(num_rois), classes][valid].sum() / count
    fg = valid & (classes < num_classes)
    expected_box = sum(smooth_l1(deltas[r, classes[r]] - targets[r], 1.0).sum() for r in np.flatnonzero(fg)) / count
    np.testing.assert_allclose(float(out["loss_cls"]), expected_cls, rtol=1e-5, err_msg=f"seed={seed}")
    np.testing.assert_allclose(float(out["loss_box_reg"]), expected_box, rtol=1e-5, err_msg=f"seed={seed}")
    assert float(out["num_fg"]) == fg.sum()


def test_truncated_svd_is_numpys_low_rank_product(rng, seed):
    head = FastRCNNBoxHead(num_classes=3, fc_dim=24, num_fc=2)
    pooled = jnp.asarray(rng.normal(size=(6, 3, 3, 4)), jnp.float32)
    variables = head.init(jax.random.key(seed % 2**31), pooled)
    variables = jax.tree.map(lambda x: x + jnp.asarray(rng.normal(0, 0.1, x.shape), x.dtype), variables)  # biases too
    ranks = (5, 0)
    svd_vars = truncated_svd_variables({"params": {"box_head": variables["params"]}}, ranks)["params"]["box_head"]
    logits, deltas = FastRCNNBoxHead(3, 24, 2, svd_ranks=ranks).apply({"params": svd_vars}, pooled)
    # Reference: fc1's kernel replaced by its best rank-5 approximation (float64 SVD), fc2 untouched.
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), variables["params"])
    u, s, vt = np.linalg.svd(p["fc1"]["kernel"], full_matrices=False)
    x = np.asarray(pooled, np.float64).reshape(6, -1)
    x = np.maximum(x @ (u[:, :5] * s[:5] @ vt[:5]) + p["fc1"]["bias"], 0)
    x = np.maximum(x @ p["fc2"]["kernel"] + p["fc2"]["bias"], 0)
    expected_logits = x @ p["predictor"]["cls_score"]["kernel"] + p["predictor"]["cls_score"]["bias"]
    np.testing.assert_allclose(np.asarray(logits), expected_logits, rtol=1e-4, atol=1e-5, err_msg=f"seed={seed}")
    assert deltas.shape == (6, 3, 4)
    # Full rank reproduces the unfactorised head.
    full = truncated_svd_variables({"params": {"box_head": variables["params"]}}, (24, 24))["params"]["box_head"]
    np.testing.assert_allclose(np.asarray(FastRCNNBoxHead(3, 24, 2, svd_ranks=(24, 24)).apply({"params": full}, pooled)[0]),
                               np.asarray(head.apply(variables, pooled)[0]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="rank 99 for fc2 exceeds"):
        truncated_svd_variables({"params": {"box_head": variables["params"]}}, (0, 99))


def test_roi_head_fields_are_declared_once_and_rcnn_keeps_its_defaults():
    head_fields = {f.name for f in dataclasses.fields(RoIHeadSettings)}
    assert {"roi_num_samples", "box_head_fc_dim", "test_nms_threshold", "roi_bg_iou_low"} <= head_fields
    assert head_fields <= {f.name for f in dataclasses.fields(RCNNSettings)}
    assert head_fields <= {f.name for f in dataclasses.fields(FastRCNNSettings)}
    rcnn = RCNNSettings()
    assert (rcnn.roi_num_samples, rcnn.roi_bg_iou_low, rcnn.roi_pooler_type, rcnn.box_head_fc_dim) == (512, 0.0, "align", 1024)
    fast = FastRCNNSettings()  # the paper's values
    assert (fast.roi_num_samples, fast.roi_positive_fraction, fast.roi_iou_threshold, fast.roi_bg_iou_low,
            fast.roi_pooler_type, fast.roi_pooler_resolution, fast.roi_smooth_l1_beta) == (64, 0.25, 0.5, 0.1, "pool", 7, 1.0)


def tiny_fast_rcnn():
    from vision_jax.train.config import base_config
    from vision_jax.models.table import build_model

    config = base_config("detection", model="fast_rcnn")
    config.data.proposals = "selective_search"
    config.model.backbone, config.model.width = "resnet18", 8
    config.model.fast_rcnn.box_head_fc_dim = 16
    return build_model(config, 3), config


def test_inference_without_proposals_is_refused_by_name():
    model, _ = tiny_fast_rcnn()
    images = jnp.zeros((1, 32, 32, 3))
    variables = model.init(jax.random.key(0), images, train=False)
    with pytest.raises(ValueError, match=r"FastRCNN needs targets\['proposals'\].*config.data.proposals"):
        model.apply(variables, images, train=False)


def test_building_without_data_proposals_is_refused():
    from vision_jax.train.config import base_config
    from vision_jax.models.table import build_model

    config = base_config("detection", model="fast_rcnn")
    with pytest.raises(ValueError, match="set config.data.proposals"):
        build_model(config, 3)
    config.data.proposals = "selective_search"
    config.model.fast_rcnn.feature_map = "P4"
    with pytest.raises(ValueError, match=r"feature_map='P4' is not an output of backbone 'resnet18'"):
        build_model(config, 3)


def test_full_size_voc_config_traces_training_and_inference():
    """configs/detection/fast_rcnn_vgg16_voc.py at its sizes (1008 canvas, 2 x 64 RoIs from 2000 given
    proposals, VOC's 20 classes), on the detection pipeline's documented batch: the paper's head shapes."""
    import os

    from vision_jax.data.dataset_info import DatasetInfo
    from vision_jax.tasks import get_task
    from vision_jax.train.config import load_config_file, validate

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = load_config_file(os.path.join(repo, "configs/detection/fast_rcnn_vgg16_voc.py"))
    validate(config)
    info = DatasetInfo(name="voc/2007", num_classes=20, class_names=tuple(f"c{i}" for i in range(20)),
                       num_examples={"train": 2}, image_shape=(None, None, 3), has=frozenset({"boxes"}))
    task = get_task(config)
    model = task.build_model(info)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0, impl="rbg"), **task.init_inputs(info), train=False))
    head = variables["params"]["box_head"]
    assert head["fc1"]["kernel"].shape == (7 * 7 * 512, 4096) and head["fc2"]["kernel"].shape == (4096, 4096)
    assert head["predictor"]["cls_score"]["kernel"].shape == (4096, 21)
    b, side, m, p = config.train.batch_size, config.data.image_size, config.data.max_instances, config.data.max_proposals
    shapes = {"image": ((side, side, 3), np.float32), "boxes": ((m, 4), np.float32), "classes": ((m,), np.int32),
              "valid": ((m,), np.bool_), "is_crowd": ((m,), np.bool_), "image_info": ((4,), np.float32),
              "proposals": ((p, 4), np.float32), "proposal_valid": ((p,), np.bool_),
              "proposal_scores": ((p,), np.float32), "image_id": ((), np.int32), "example_valid": ((), np.bool_)}
    batch = {k: jax.ShapeDtypeStruct((b, *shape), dtype) for k, (shape, dtype) in shapes.items()}
    loss, (metrics, _) = jax.eval_shape(lambda v, x: task.loss(model, v, x, jax.random.PRNGKey(0), True), variables, batch)
    assert loss.shape == () and {"loss_cls", "loss_box_reg", "roi_num_fg_samples"} <= set(metrics)
    predictions = jax.eval_shape(lambda v, x: task.predict(model, v, x), variables, batch)
    assert predictions["boxes"].shape == (b, 100, 4) and predictions["classes"].shape == (b, 100)
    # With the paper's SVD ranks the head holds the factorised layers truncated_svd_variables writes.
    config.model.fast_rcnn.svd_ranks = (1024, 256)
    svd_model = task.build_model(info)
    svd = jax.eval_shape(lambda: svd_model.init(jax.random.key(0, impl="rbg"), **task.init_inputs(info), train=False))
    svd_head = svd["params"]["box_head"]
    assert svd_head["fc1_svd_in"]["kernel"].shape == (25088, 1024) and "bias" not in svd_head["fc1_svd_in"]
    assert svd_head["fc2_svd_out"]["kernel"].shape == (256, 4096) and svd_head["fc2_svd_out"]["bias"].shape == (4096,)

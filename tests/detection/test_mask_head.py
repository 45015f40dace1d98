"""Mask R-CNN's mask head, targets, loss and inference against float64 NumPy (detectron2's semantics)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rcnn_reference as ref

import vision_jax.ops as vops
from vision_jax.models.rcnn.mask_head import MaskHead, mask_rcnn_inference, mask_rcnn_loss, mask_rcnn_targets
from vision_jax.models.rcnn.mask_rcnn import FPN_MASK_CONVS
from vision_jax.models.rcnn.settings import RCNNSettings


def torch_layout(params: dict, num_conv: int):
    """The head's flax parameters as torch (weight, bias) pairs (the weight mapping MaskHead states)."""
    conv = lambda p: (np.asarray(p["kernel"], np.float64).transpose(3, 2, 0, 1), np.asarray(p["bias"], np.float64))
    convs = [conv(params[f"mask_fcn{i + 1}"]) for i in range(num_conv)]
    kernel = np.asarray(params["deconv"]["kernel"], np.float64)[::-1, ::-1].transpose(2, 3, 0, 1)
    return convs, (kernel, np.asarray(params["deconv"]["bias"], np.float64)), conv(params["predictor"])


def test_mask_head_computes_detectron2s_conv_upsample_head(rng, seed):
    num_classes, conv_dim, num_conv = 3, 6, 2
    pooled = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
    head = MaskHead(num_classes, conv_dim, num_conv)
    params = head.init(jax.random.PRNGKey(seed), pooled)["params"]
    # Random biases and a predictor of normal scale, so that every term is exercised.
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32) * 0.5, params)
    logits = np.asarray(jax.jit(head.apply)({"params": params}, pooled))
    assert logits.shape == (2, 10, 10, num_classes) and logits.dtype == np.float32, f"seed={seed}"
    want = ref.mask_head(pooled, *torch_layout(params, num_conv))
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")


def test_mask_head_is_initialised_as_detectron2(seed):
    """MSRA fill (plain normal, variance 2 / fan_out) for convs and deconv, N(0, 0.001) predictor,
    zero biases; defaults from RCNNSettings give [R, 28, 28, C] from 14 x 14 RoIs."""
    s = RCNNSettings()
    assert s.mask_head_num_conv is None and FPN_MASK_CONVS == 4  # None: the FPN model's four convs
    head = MaskHead(5, s.mask_head_conv_dim, FPN_MASK_CONVS)
    pooled = jnp.zeros((1, s.mask_pooler_resolution, s.mask_pooler_resolution, 256))
    variables = head.init(jax.random.PRNGKey(seed), pooled)
    assert head.apply(variables, pooled).shape == (1, s.mask_resolution, s.mask_resolution, 5) == (1, 28, 28, 5)
    params = variables["params"]
    expected_std = {f"mask_fcn{i + 1}": np.sqrt(2 / (256 * 9)) for i in range(4)}
    expected_std.update(deconv=np.sqrt(2 / (256 * 4)), predictor=0.001)
    assert set(params) == set(expected_std)
    for name, std in expected_std.items():
        kernel = np.asarray(params[name]["kernel"], np.float64)
        n = kernel.size  # tolerances of 5 standard errors of the sample's std and mean
        assert abs(kernel.std() / std - 1) < 5 / np.sqrt(2 * n), f"{name}: std {kernel.std()} vs {std}, seed={seed}"
        assert abs(kernel.mean()) < 5 * std / np.sqrt(n), f"{name}: mean {kernel.mean()}, seed={seed}"
        if n >= 100_000:  # a normal sample this large has |w| > 3.5 std somewhere; a truncated one never
            assert np.abs(kernel).max() > 3.5 * std, f"{name}: looks truncated, seed={seed}"
        assert not np.any(np.asarray(params[name]["bias"])), name


def test_mask_targets_read_the_pipelines_uint8_box_masks_as_coverage(rng, seed):
    """uint8 0..255 box masks are coverage / 255 (the op's own reference test is test_box_mask_targets.py)."""
    box_masks = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    gt_boxes = np.array([[4, 4, 30, 20], [10, 2, 60, 50], [0, 0, 64, 64]], np.float32)
    gt_index = rng.integers(0, 3, 8).astype(np.int32)
    rois = (gt_boxes[gt_index] + rng.uniform(-4, 4, (8, 4))).astype(np.float32)
    got = np.asarray(jax.jit(mask_rcnn_targets, static_argnums=4)(box_masks, gt_boxes, gt_index, rois, 7))
    soft = np.asarray(vops.mask_targets_from_box_masks(box_masks / 255.0, gt_boxes, gt_index, rois, 7, threshold=None))
    decided = np.abs(soft - 0.5) > 1e-4
    assert got.shape == (8, 7, 7) and got.dtype == np.float32
    np.testing.assert_array_equal(got[decided], (soft >= 0.5)[decided].astype(np.float32), err_msg=f"seed={seed}")


def test_c4_mask_head_is_deconv_relu_predictor_on_res5(rng, seed):
    """detectron2's C4 head: MaskRCNNConvUpsampleHead with NUM_CONV 0 on res5's 7 x 7 output -> 14 x 14."""
    res5 = rng.normal(size=(2, 7, 7, 12)).astype(np.float32)
    head = MaskHead(3, 5, 0)
    params = head.init(jax.random.PRNGKey(seed), res5)["params"]
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32) * 0.5, params)
    logits = np.asarray(jax.jit(head.apply)({"params": params}, res5))
    assert logits.shape == (2, 14, 14, 3) and set(params) == {"deconv", "predictor"}
    np.testing.assert_allclose(logits, ref.mask_head(res5, *torch_layout(params, 0)), rtol=1e-4, atol=1e-4,
                               err_msg=f"seed={seed}")  # fmt: skip


def test_mask_loss_is_sigmoid_cross_entropy_on_the_ground_truth_class(rng, seed):
    num_rois, resolution, num_classes = 10, 6, 4
    logits = rng.normal(0, 3, (num_rois, resolution, resolution, num_classes)).astype(np.float32)
    classes = rng.integers(0, num_classes + 1, num_rois).astype(np.int32)  # num_classes = background
    foreground = (classes < num_classes) & (rng.uniform(size=num_rois) < 0.8)
    targets = (rng.uniform(size=(num_rois, resolution, resolution)) < 0.5).astype(np.float32)
    got = float(jax.jit(mask_rcnn_loss)(logits, classes, foreground, targets))
    want = ref.mask_loss(logits, classes, foreground, targets)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6), f"seed={seed}"


def test_mask_loss_is_exactly_zero_without_foreground(rng, seed):
    logits = jnp.asarray(rng.normal(0, 3, (6, 4, 4, 3)), jnp.float32)
    classes = jnp.full(6, 3, jnp.int32)
    targets = jnp.asarray(rng.uniform(size=(6, 4, 4)) < 0.5, jnp.float32)
    loss, grad = jax.value_and_grad(mask_rcnn_loss)(logits, classes, jnp.zeros(6, bool), targets)
    assert float(loss) == 0.0 and not np.any(np.asarray(grad)), f"seed={seed}"


def test_mask_inference_is_the_sigmoid_of_the_predicted_class(rng, seed):
    logits = rng.normal(0, 3, (2, 5, 7, 7, 4)).astype(np.float32)  # [B, K, M, M, C]
    classes = rng.integers(0, 4, (2, 5)).astype(np.int32)
    got = np.asarray(jax.jit(mask_rcnn_inference)(logits, classes))
    assert got.shape == (2, 5, 7, 7) and got.dtype == np.float32
    want = np.stack([ref.mask_inference(logits[b], classes[b]) for b in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"seed={seed}")

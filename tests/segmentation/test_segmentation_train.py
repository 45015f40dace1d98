"""End to end: a user's own mask_folder through the one train loop with only the data name and root
changed on the command line (FCN-8s overfits it), the conv autoencoder on shapes beating the mean-image
baseline, SegNet overfitting a few images (the segmentation task's pictures: tests/viz/test_viz_task_pictures.py)."""

import os

import numpy as np
import pytest
from command_line import command_line_config
from PIL import Image

from vision_jax import viz
from vision_jax.data import datasets, pipeline
from vision_jax.evaluation.reconstruction import per_image_psnr
from vision_jax.tasks.reconstruction import ReconstructionTask
from vision_jax.train.loop import train_and_evaluate

# Speed overrides only (no dataset-specific keys): a small input, tiny width and few steps for this
# 2-core machine.
FAST = [
    "--config.data.image_size=64",
    "--config.model.width=8",
    "--config.train.batch_size=8",
    "--config.train.eval_batch_size=8",
    "--config.train.log_every=20",
    "--config.train.checkpoint_every=1000",
    "--config.train.eval_every=1000",
    "--config.train.progress_bar=False",
    "--config.train.num_pictures=4",
    "--config.optimizer.warmup_steps=10",
    "--config.optimizer.learning_rate=0.01",
]


def _scenes(rng, count, size=None):
    """Yields (image uint8 [h, w, 3], mask uint8 [h, w]): noisy grey background (class 0), red boxes
    (class 1), one blue disc (class 2) with an ignored (255) one-pixel band around it. Sizes vary and are
    not square unless `size` = (h, w) is given."""
    for _ in range(count):
        height, width = size or (rng.integers(24, 48), rng.integers(30, 64))
        image = np.clip(rng.normal(120, 20, size=(height, width, 3)), 0, 255)
        mask = np.zeros((height, width), np.uint8)
        y, x = np.mgrid[:height, :width]
        for _ in range(rng.integers(1, 4)):
            top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
            h, w = rng.integers(6, 14, size=2)
            box = (y >= top) & (y < top + h) & (x >= left) & (x < left + w)
            image[box], mask[box] = (220, 40, 40), 1
        cy, cx, r = rng.integers(8, height - 8), rng.integers(8, width - 8), rng.integers(6, 10)
        distance = np.hypot(y - cy, x - cx)
        image[distance < r], mask[distance < r] = (40, 60, 220), 2
        mask[(distance >= r - 0.5) & (distance < r + 0.5)] = 255
        yield image.astype(np.uint8), mask


def write_own_data(root, rng, num_train=64):
    """DIR/train and DIR/test (copies of the first 8 training images, so the run is an overfit check;
    64 training images because the loop rebuilds its tf.data pipeline every epoch, ~2 s here);
    no classes.txt: the class count (3) comes from scanning the masks."""
    scenes = list(_scenes(rng, num_train))
    for split, chosen in (("train", scenes), ("test", scenes[:8])):
        os.makedirs(os.path.join(root, split, "images"))
        os.makedirs(os.path.join(root, split, "masks"))
        for index, (image, mask) in enumerate(chosen):
            Image.fromarray(image).save(os.path.join(root, split, "images", f"{index:03d}.png"))
            Image.fromarray(mask).save(os.path.join(root, split, "masks", f"{index:03d}.png"))


@pytest.mark.slow
def test_own_mask_folder_trains_and_evaluates_with_only_name_and_root(repo_root, tmp_path, seed):
    rng = np.random.default_rng(seed)
    root = tmp_path / "my_data"
    write_own_data(root, rng)
    config = command_line_config(
        repo_root,
        "configs/segmentation/shapes_fcn8s.py",
        "--config.data.name=mask_folder",
        f"--config.data.root={root}",
        *FAST,
        "--config.train.num_steps=150",
    )
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert results["mIoU"] >= 0.8, f"seed={seed}: {results}"
    assert set(results) >= {
        "pixel_accuracy",
        "mean_class_accuracy",
        "frequency_weighted_iou",
        "IoU/class_0",
        "IoU/class_1",
        "IoU/class_2",
    }
    pictures = sorted(os.listdir(tmp_path / "run" / "pictures"))
    assert pictures == [f"eval_{i:02d}.png" for i in range(4)] + ["eval_sheet.png"]
    picture = np.asarray(Image.open(tmp_path / "run" / "pictures" / pictures[0]))
    assert picture.shape[1] == 3 * 256 + 2 * viz.PANEL_GAP, picture.shape  # image | truth | prediction, upscaled


@pytest.mark.slow
def test_autoencoder_beats_the_mean_image_and_draws_inputs_beside_reconstructions(repo_root, tmp_path, seed):
    data_dir = str(tmp_path / "tfds")
    config = command_line_config(
        repo_root,
        "configs/segmentation/shapes_autoencoder.py",
        f"--config.data.data_dir={data_dir}",
        "--config.data.shapes_variant=single",
        "--config.data.image_size=64",
        "--config.data.shapes_num_train=16",
        "--config.data.shapes_num_test=8",
        "--config.data.eval_split=train",
        "--config.model.segmentation.code_feature=C3",
        "--config.model.segmentation.code_stride=8",
        "--config.train.num_steps=150",
        f"--config.seed={seed % 1000}",
        *FAST,
    )
    config.train.eval_batch_size = 16
    results = train_and_evaluate(config, str(tmp_path / "run"))

    # Baseline: every image reconstructed as the mean of the evaluated images (the best constant guess).
    task = ReconstructionTask(config)
    ds, info = datasets.load(config.data, config.data.eval_split)
    batches = pipeline.eval_batches(ds, task.preprocess(info, False), batch_size=8)
    targets = np.concatenate([b["target"][b["example_valid"]] for b in batches])
    baseline = float(np.mean(per_image_psnr(np.broadcast_to(targets.mean(0), targets.shape), targets)))
    assert results["psnr"] >= baseline + 3.0, (
        f"seed={seed}: CAE {results['psnr']:.2f} dB vs mean image {baseline:.2f} dB"
    )
    pictures = sorted(os.listdir(tmp_path / "run" / "pictures"))
    assert pictures == [f"eval_{i:02d}.png" for i in range(4)] + ["eval_sheet.png"]
    picture = np.asarray(Image.open(tmp_path / "run" / "pictures" / pictures[0]))
    top = viz.panel_origins(2, 256, 256)[0][0]
    assert picture.shape == (top + 256, 2 * 256 + viz.PANEL_GAP, 3), picture.shape  # input | reconstruction, captioned


def test_segnet_overfits_a_few_images(seed):
    """SegNet (two blocks) on 4 generated 32x32 scenes, 160 Adam steps outside the loop (no pipeline or
    checkpoint cost): the max-unpooling decoder must learn to label their pixels. 80 steps were not
    enough when the red boxes cover ~3% of the pixels (seed 1469956291: the box class was still
    never predicted at loss 0.04; at 160 steps its pixels are labelled)."""
    import jax
    import jax.numpy as jnp
    import optax

    from vision_jax.evaluation.segmentation import SegmentationEvaluator
    from vision_jax.models.segmentation.segnet import SegNet
    from vision_jax.models.segmentation.settings import SegNetSettings
    from vision_jax.ops.losses import softmax_cross_entropy

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(4):
        image, mask = next(iter(_scenes(rng, 1, size=(32, 32))))
        images.append((image / 255.0 - 0.5) / 0.25)
        labels.append(mask.astype(np.int32))
    images, labels = np.stack(images).astype(np.float32), np.stack(labels)
    model = SegNet(num_classes=3, width=8, settings=SegNetSettings(convs_per_block=(1, 1)))
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(seed, impl="rbg"))
    tx = optax.adam(1e-2)

    @jax.jit
    def step(variables, opt_state):
        def loss_fn(params):
            logits, state = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
            return softmax_cross_entropy(logits, labels), state

        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
        updates, opt_state = tx.update(grads, opt_state)
        return {"params": optax.apply_updates(variables["params"], updates), **state}, opt_state, loss

    opt_state = tx.init(variables["params"])
    for _ in range(160):
        variables, opt_state, loss = step(variables, opt_state)
    predicted = np.asarray(jnp.argmax(model.apply(variables, images, train=False), -1))
    evaluator = SegmentationEvaluator(["background", "box", "disc"])
    evaluator.update({"labels": predicted}, {"segmentation": labels, "example_valid": np.ones(4, bool)})
    results = evaluator.result()
    assert results["mIoU"] >= 0.8, f"seed={seed}: loss {float(loss):.3f}, {results}"

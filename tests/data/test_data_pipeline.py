"""Training and evaluation batches: exact resume, determinism, epochs, per-example seeds, eval padding."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from vision_jax.data import datasets
from vision_jax.data import pipeline
from vision_jax.data import transforms


def in_memory_dataset(num_examples: int, first_id: int = 1000) -> tf.data.Dataset:
    values = np.arange(num_examples, dtype=np.float32)
    return tf.data.Dataset.from_tensor_slices({
        "value": values, "vector": np.stack([values, -values], 1), "image_id": np.arange(first_id, first_id + num_examples),
    })


def noisy_preprocess(example, seed):
    """Uses the seed, so batches depend on it exactly as augmentation does."""
    return {
        "value": example["value"],
        "vector": example["vector"] + tf.random.stateless_normal([2], seed=seed),
        "image_id": example["image_id"],
        "seed": seed,
    }


def take(iterator, count):
    return list(itertools.islice(iterator, count))


def assert_batches_equal(first, second, context):
    assert len(first) == len(second), context
    for step, (a, b) in enumerate(zip(first, second)):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step} {key} {context}")


@pytest.mark.parametrize("cache", [False, True])
def test_resume_from_any_step_yields_the_uninterrupted_batches(cache, rng, seed):
    num_examples, batch_size = int(rng.integers(10, 40)), int(rng.integers(1, 8))
    batch_size = min(batch_size, num_examples)
    steps_per_epoch = num_examples // batch_size
    ds = in_memory_dataset(num_examples)
    run_seed = int(rng.integers(0, 2**40))
    total = 3 * steps_per_epoch + 2
    reference = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=batch_size, seed=run_seed, cache=cache), total)
    # Resume points: inside the first epoch, on an epoch boundary, inside a later epoch.
    for start in sorted({int(rng.integers(1, steps_per_epoch + 1)), steps_per_epoch, int(rng.integers(steps_per_epoch, total))}):
        resumed = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=batch_size, seed=run_seed, start_step=start, cache=cache), total - start)
        assert_batches_equal(reference[start:], resumed, f"start_step={start} n={num_examples} b={batch_size} seed={seed}")


def test_resume_on_shapes_with_augmentation(single_shapes_config, seed):
    ds, info = datasets.load(single_shapes_config, "train")

    def preprocess(example, seed_pair):
        image, boxes, _ = transforms.random_horizontal_flip(example["image"], example["boxes"], None, seed_pair)
        return {"image": transforms.normalize_image(image), "box": boxes[0], "label": tf.cast(example["label"], tf.int32)}

    run_seed = seed % 1000
    kwargs = {"batch_size": 16, "seed": run_seed, "num_examples": info.num_examples["train"]}
    reference = take(pipeline.train_batches(ds, preprocess, **kwargs), 9)  # 4 steps per epoch
    resumed = take(pipeline.train_batches(ds, preprocess, start_step=6, **kwargs), 3)
    assert_batches_equal(reference[6:], resumed, f"seed={seed}")
    assert reference[0]["image"].shape == (16, 64, 64, 3) and reference[0]["image"].dtype == np.float32


def test_epochs_are_permutations_with_fresh_orders_and_seeds(rng, seed):
    num_examples, batch_size = 23, 4  # 5 steps an epoch, 3 examples left out of each epoch
    ds = in_memory_dataset(num_examples)
    run_seed = int(rng.integers(0, 2**40))
    batches = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=batch_size, seed=run_seed), 5 * 4)
    orders, seeds = [], set()
    for epoch in range(4):
        ids = np.concatenate([b["image_id"] for b in batches[5 * epoch: 5 * epoch + 5]])
        assert len(set(ids)) == 20 and set(ids) <= set(range(1000, 1023)), (epoch, seed)
        orders.append(tuple(ids))
        for batch in batches[5 * epoch: 5 * epoch + 5]:
            assert batch["example_valid"].all()
            # The seed is (epoch seed, image_id): one epoch seed per epoch, derived from (run seed, epoch).
            np.testing.assert_array_equal(batch["seed"][:, 1], batch["image_id"])
            assert set(batch["seed"][:, 0]) == {pipeline.epoch_seed(run_seed, epoch)}
            seeds |= {tuple(s) for s in batch["seed"]}
    assert len(set(orders)) == 4, seed  # every epoch its own order
    assert len(seeds) == 4 * 20, seed  # no (epoch, example) seed repeats


def test_same_seed_same_batches_other_seed_other_order(rng, seed):
    ds = in_memory_dataset(30)
    run_seed = int(rng.integers(0, 2**40))
    first = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=5, seed=run_seed), 8)
    second = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=5, seed=run_seed), 8)
    assert_batches_equal(first, second, f"seed={seed}")
    other = take(pipeline.train_batches(ds, noisy_preprocess, batch_size=5, seed=run_seed + 1), 8)
    assert not np.array_equal(np.concatenate([b["image_id"] for b in first]), np.concatenate([b["image_id"] for b in other]))


def test_small_shuffle_buffer_and_unknown_cardinality_still_resume(rng, seed):
    ds = in_memory_dataset(50).filter(lambda example: True)  # filter hides the cardinality
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    kwargs = {"batch_size": 6, "seed": seed % 2**31, "shuffle_buffer_size": 7}
    reference = take(pipeline.train_batches(ds, noisy_preprocess, **kwargs), 20)
    resumed = take(pipeline.train_batches(ds, noisy_preprocess, start_step=11, **kwargs), 9)
    assert_batches_equal(reference[11:], resumed, f"seed={seed}")


def test_eval_batches_keep_order_and_pad_the_last_batch(rng, seed):
    num_examples, batch_size = int(rng.integers(1, 30)), int(rng.integers(1, 8))
    ds = in_memory_dataset(num_examples)
    batches = list(pipeline.eval_batches(ds, noisy_preprocess, batch_size=batch_size))
    num_batches = -(-num_examples // batch_size)
    assert len(batches) == num_batches, seed
    valid = np.concatenate([b["example_valid"] for b in batches])
    np.testing.assert_array_equal(valid, np.arange(num_batches * batch_size) < num_examples)
    ids = np.concatenate([b["image_id"] for b in batches])
    np.testing.assert_array_equal(ids[:num_examples], np.arange(1000, 1000 + num_examples))
    np.testing.assert_array_equal(ids[num_examples:], 0)  # padding is zeros
    for b in batches:
        assert all(v.shape[0] == batch_size for v in b.values())
        np.testing.assert_array_equal(b["seed"][b["example_valid"], 0], 0)
    # Evaluation is repeatable: the seed is (0, image_id) every time.
    again = list(pipeline.eval_batches(ds, noisy_preprocess, batch_size=batch_size))
    assert_batches_equal(batches, again, f"seed={seed}")


def test_eval_batches_pad_to_num_batches_and_refuse_too_few(seed):
    ds = in_memory_dataset(7)
    batches = list(pipeline.eval_batches(ds, noisy_preprocess, batch_size=3, num_batches=5))
    assert len(batches) == 5
    np.testing.assert_array_equal(np.concatenate([b["example_valid"] for b in batches]), np.arange(15) < 7)
    assert batches[4]["vector"].shape == (3, 2) and not batches[4]["vector"].any()
    with pytest.raises(ValueError, match=r"needs more than num_batches=2 batches of 3"):
        list(pipeline.eval_batches(ds, noisy_preprocess, batch_size=3, num_batches=2))


def test_bad_arguments_are_refused():
    ds = in_memory_dataset(5)
    with pytest.raises(ValueError, match=r"batch_size=6 must be in \[1, num_examples=5\]"):
        next(pipeline.train_batches(ds, noisy_preprocess, batch_size=6, seed=0))
    with pytest.raises(ValueError, match=r"the dataset is infinite"):
        next(pipeline.train_batches(ds.repeat(), noisy_preprocess, batch_size=2, seed=0))

    def variable_shape(example, seed):
        return {"ragged": tf.zeros([tf.cast(example["value"], tf.int32)])}

    with pytest.raises(ValueError, match=r"preprocess output 'ragged' has shape \(None,\); every field must have a fixed shape"):
        next(pipeline.train_batches(ds, variable_shape, batch_size=2, seed=0))


RESUME_IN_FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf
from vision_jax.data import pipeline
run_seed, start = int(sys.argv[1]), int(sys.argv[2])
ds = tf.data.Dataset.from_tensor_slices({"value": np.arange(23, dtype=np.float32), "image_id": np.arange(23)})
pre = lambda example, seed: {"image_id": example["image_id"], "noise": tf.random.stateless_uniform([], seed=seed)}
batches = pipeline.train_batches(ds, pre, batch_size=4, seed=run_seed, start_step=start)
for _ in range(6):
    batch = next(batches)
    print(" ".join(f"{i}:{x!r}" for i, x in zip(batch["image_id"], batch["noise"].tolist())))
"""


def test_a_fresh_process_resumes_with_the_same_batches(repo_root, seed):
    """What a restarted run does: a new Python process, same seed, start_step = the saved step."""
    import subprocess
    import sys

    run_seed, start = seed % 2**31, 4  # 5 steps an epoch: crosses into the second epoch
    pre = lambda example, s: {"image_id": example["image_id"], "noise": tf.random.stateless_uniform([], seed=s)}
    ds = tf.data.Dataset.from_tensor_slices({"value": np.arange(23, dtype=np.float32), "image_id": np.arange(23)})
    reference = take(pipeline.train_batches(ds, pre, batch_size=4, seed=run_seed), start + 6)[start:]
    expected = [" ".join(f"{i}:{x!r}" for i, x in zip(b["image_id"], b["noise"].tolist())) for b in reference]
    result = subprocess.run([sys.executable, "-c", RESUME_IN_FRESH_PROCESS, str(run_seed), str(start)],
                            cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == expected, f"seed={seed}"

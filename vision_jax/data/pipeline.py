"""Batches for training (shuffled, infinite, resumable) and evaluation (one pass, padded) as NumPy dicts.

Training order. An epoch is one pass over the dataset in a fresh shuffle seeded by (seed, epoch); it
yields `steps_per_epoch = num_examples // batch_size` batches, the last `num_examples % batch_size`
examples of that epoch's order being left out (a different few each epoch). Step k therefore reads
epoch k // steps_per_epoch, from position (k % steps_per_epoch) * batch_size of that epoch's order,
which is what `start_step` uses to resume: the skipped raw records are read but never preprocessed, and
the batches that follow are exactly those an uninterrupted iterator yields from step k on.

Randomness. `preprocess(example, seed)` gets seed = int64 [2] = (epoch seed, example id), where the
epoch seed is derived from (seed, epoch) and the example id is the canonical `image_id` (its position
in the dataset when there is none). Ids are unique within a split across processes, so augmentations
differ per example, epoch and run, and never repeat across processes.

Shuffling uses tf.data's shuffle buffer with an explicit seed per epoch, built eagerly (a seed inside a
tf.data function gives every epoch the same order: seen with TF 2.21). Its order depends on the TF
global seed as well (tf.random.set_seed): runs that call it, or not, in the same way match. Small
datasets chain several eagerly seeded epochs into one pipeline (`MIN_EXAMPLES_PER_PIPELINE`), because
each pipeline traces `preprocess` once, which costs seconds.

Errors. A loader's in-graph check that fails with a message naming its file (an image that cannot be
decoded, a size that differs from its annotation: data_errors.py) is raised from both iterators as
`data_errors.DataFileError`, a ValueError holding that message alone.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import data_errors

Preprocess = Callable[[dict, tf.Tensor], dict]
EXAMPLE_VALID = "example_valid"
DEFAULT_SHUFFLE_BUFFER = 16_384  # decoded examples held for shuffling (the whole dataset when smaller)


MIN_EXAMPLES_PER_PIPELINE = 512  # see train_batches


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch, a hash of (seed, epoch) so nearby runs and epochs are unrelated."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, epoch]).generate_state(2, np.uint64)[0] >> 1)


def count_examples(ds: tf.data.Dataset) -> int:
    """Number of elements of a finite dataset: its cardinality when known, else one counting pass."""
    cardinality = int(ds.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the dataset is infinite: pass a finite dataset (load() returns one)")
    if cardinality >= 0:
        return cardinality
    try:
        return int(ds.reduce(np.int64(0), lambda count, _: count + 1))
    except tf.errors.OpError as error:
        data_errors.reraise(error)


def _with_ids(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Pairs each example with its id: `image_id` when present, else its position in the dataset."""
    if "image_id" in ds.element_spec:
        return ds.map(lambda example: (example["image_id"], example))
    return ds.enumerate()


def _check_fixed_shapes(spec, where: str) -> None:
    for key, tensor_spec in spec.items():
        if not tensor_spec.shape.is_fully_defined():
            raise ValueError(f"{where}: preprocess output {key!r} has shape {tensor_spec.shape}; every field must have a fixed shape to be batched")


def train_batches(
    ds: tf.data.Dataset,
    preprocess: Preprocess,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    num_examples: int | None = None,
    cache: bool = False,
    shuffle_buffer_size: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite iterator of training batches, deterministic in (ds, preprocess, batch_size, seed).

    Args:
      ds: canonical examples of this process (load()'s output), finite, unshuffled.
      preprocess: (canonical example, seed int64 [2]) -> dict of fixed-shape tensors.
      batch_size: examples per batch on this process.
      seed: the run's seed.
      start_step: the first step to yield (see the module docstring); 0 starts from the beginning.
      num_examples: number of examples in ds; counted when None.
      cache: keep the raw (decoded, unpreprocessed) examples in memory after the first epoch; for
        datasets that fit in memory, where reading and decoding costs more than preprocessing.
      shuffle_buffer_size: examples in tf.data's shuffle buffer; default min(num_examples, 16384).

    Yields:
      dicts of NumPy arrays [batch_size, ...]: preprocess's fields plus `example_valid` (all True).
    """
    num_examples = count_examples(ds) if num_examples is None else num_examples
    if batch_size < 1 or num_examples < batch_size:
        raise ValueError(f"batch_size={batch_size} must be in [1, num_examples={num_examples}] (drop_remainder batching)")
    if start_step < 0:
        raise ValueError(f"start_step={start_step} must be >= 0")
    steps_per_epoch = num_examples // batch_size
    buffer_size = min(num_examples, shuffle_buffer_size or DEFAULT_SHUFFLE_BUFFER)
    raw = _with_ids(ds)
    if cache:
        raw = raw.cache()  # one in-memory cache, shared by every epoch's pipeline below

    def with_seed(epoch_seed_value: int):
        def attach(example_id, example):
            return example, tf.stack([tf.constant(epoch_seed_value, tf.int64), tf.cast(example_id, tf.int64)])
        return attach

    def mark_valid(batch):
        return {**batch, EXAMPLE_VALID: tf.ones([batch_size], tf.bool)}

    first_epoch, first_step_in_epoch = divmod(start_step, steps_per_epoch)
    # Epochs are chained so that one pipeline (one trace of `preprocess`, which costs seconds) serves
    # at least MIN_EXAMPLES_PER_PIPELINE examples: with a few images, a pipeline per epoch would spend
    # more time tracing than training. Every epoch is a whole number of batches, so batching the chain
    # gives exactly the batches of one pipeline per epoch.
    epochs_per_pipeline = max(1, -(-MIN_EXAMPLES_PER_PIPELINE // (steps_per_epoch * batch_size)))
    for chain_start in itertools.count(first_epoch, epochs_per_pipeline):
        chain = None
        for epoch in range(chain_start, chain_start + epochs_per_pipeline):
            skip_batches = first_step_in_epoch if epoch == first_epoch else 0
            this_seed = epoch_seed(seed, epoch)
            epoch_ds = raw.shuffle(buffer_size, seed=this_seed, reshuffle_each_iteration=False)
            epoch_ds = epoch_ds.take(steps_per_epoch * batch_size).skip(skip_batches * batch_size)
            epoch_ds = epoch_ds.map(with_seed(this_seed))
            chain = epoch_ds if chain is None else chain.concatenate(epoch_ds)
        chain = chain.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        _check_fixed_shapes(chain.element_spec, "train_batches")
        chain = chain.batch(batch_size, drop_remainder=True).map(mark_valid)
        yield from data_errors.named_errors(tfds.as_numpy(chain.prefetch(tf.data.AUTOTUNE)))


def eval_batches(
    ds: tf.data.Dataset,
    preprocess: Preprocess,
    *,
    batch_size: int,
    num_batches: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over ds in order, in batches of exactly batch_size.

    preprocess gets seed (0, example id) (the same every time). The last batch is padded with zeros to
    batch_size and `example_valid` bool [batch_size] is False on the padding. With num_batches, all-
    padding batches are appended up to that count (processes with shards of different sizes then run
    the same number of evaluation steps); ValueError if the data needs more batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")

    def attach(example_id, example):
        return preprocess(example, tf.stack([tf.constant(0, tf.int64), tf.cast(example_id, tf.int64)]))

    examples = _with_ids(ds).map(attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    _check_fixed_shapes(examples.element_spec, "eval_batches")
    examples = examples.map(lambda example: {**example, EXAMPLE_VALID: tf.constant(True)})

    def pad_batch(batch):
        missing = batch_size - tf.shape(batch[EXAMPLE_VALID])[0]

        def pad(values):
            padded = tf.pad(values, [[0, missing]] + [[0, 0]] * (values.shape.rank - 1))
            padded.set_shape([batch_size] + values.shape.as_list()[1:])
            return padded

        return {key: pad(values) for key, values in batch.items()}

    batches = examples.batch(batch_size).map(pad_batch).prefetch(tf.data.AUTOTUNE)
    spec = batches.element_spec
    count = 0
    for batch in data_errors.named_errors(tfds.as_numpy(batches)):
        count += 1
        if num_batches is not None and count > num_batches:
            raise ValueError(f"eval_batches: the data needs more than num_batches={num_batches} batches of {batch_size}")
        yield batch
    while num_batches is not None and count < num_batches:
        count += 1
        yield {key: np.zeros(s.shape, s.dtype.as_numpy_dtype) for key, s in spec.items()}

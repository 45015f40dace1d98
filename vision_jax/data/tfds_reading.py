"""Reading one process's shard of a tfds split, in a fixed order, with an image id per example.

Every loader that goes through a tfds builder (datasets by name and the local builders) uses
`read_process_shard`, so sharding and image ids work the same everywhere:

- the split (any tfds split string: 'train', 'validation', 'train[:90%]', ...) is cut with
  `tfds.even_splits(split, process_count)` (what `tfds.split_for_jax_process` does): contiguous,
  non-overlapping parts whose sizes differ by at most one, the first parts taking the remainder;
- `image_id` = the example's position in the whole split = (examples in the parts of lower-index
  processes) + its position in this process's part;
- files are read in their stored order (no file shuffling), so every run sees the same sequence.
"""

from __future__ import annotations

import logging

import tensorflow as tf
import tensorflow_datasets as tfds


def check_process(process_index: int, process_count: int) -> None:
    """Raises ValueError unless 0 <= process_index < process_count."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")


def prepare(builder: tfds.core.DatasetBuilder, *, what_to_do: str) -> None:
    """Runs `builder.download_and_prepare()` unless the data is already in its data_dir.

    Two processes may prepare the same local builder at once (a multi-process run on one machine):
    tfds writes into a temporary folder and renames it, so the loser's rename fails; that failure is
    harmless when the other process has finished, and is only re-raised otherwise.

    what_to_do: appended to the error message when preparing fails (e.g. how to get the files).
    """
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare()
    except Exception as error:  # tfds raises many types: download, manual-dir, IO errors
        if builder.is_prepared():
            logging.info("%s was prepared by another process meanwhile", builder.name)
            return
        raise ValueError(
            f"could not prepare dataset {builder.name!r} in data_dir {builder.data_dir}: "
            f"{type(error).__name__}: {error}. {what_to_do}"
        ) from error


def split_names(builder: tfds.core.DatasetBuilder) -> list[str]:
    """The split names a prepared builder knows (empty under tfds.testing.mock_data)."""
    return list(builder.info.splits.keys())


def split_size(builder: tfds.core.DatasetBuilder, split) -> int:
    """Number of examples in `split` (a split string or a tfds.even_splits part).

    Uses the builder's metadata; when there is none (tfds.testing.mock_data generates examples from
    the builder's code and records no splits) counts what the builder yields for that split.
    """
    if split_names(builder):
        return builder.info.splits[split].num_examples
    cardinality = int(builder.as_dataset(split=split).cardinality())
    if cardinality < 0:
        raise ValueError(f"{builder.name}: unknown number of examples in split {split!r}")
    return cardinality


def check_split(builder: tfds.core.DatasetBuilder, split: str, dataset_name: str) -> None:
    """Raises ValueError naming the split and the available ones when `split` does not resolve."""
    known = split_names(builder)
    if not known:
        return  # no metadata to check against (mock data): any split name is accepted
    try:
        builder.info.splits[split]
    except (KeyError, ValueError, AssertionError) as error:
        raise ValueError(
            f"split {split!r} not found in dataset {dataset_name!r}; available splits: {known} "
            f"(tfds slicing such as 'train[:90%]' is accepted)"
        ) from error


def read_process_shard(
    builder: tfds.core.DatasetBuilder,
    split: str,
    *,
    process_index: int,
    process_count: int,
) -> tf.data.Dataset:
    """This process's part of `split`, decoded, unshuffled, each element with an int64 `image_id`.

    Returns the builder's feature dict per example plus `image_id` (see the module docstring).
    """
    check_process(process_index, process_count)
    parts = tfds.even_splits(split, n=process_count)
    offset = sum(split_size(builder, part) for part in parts[:process_index])
    read_config = tfds.ReadConfig(shuffle_seed=None, try_autocache=False)
    ds = builder.as_dataset(split=parts[process_index], shuffle_files=False, read_config=read_config)
    ds = ds.enumerate(start=offset)
    return ds.map(lambda index, example: {**example, "image_id": index}, num_parallel_calls=tf.data.AUTOTUNE)

"""A config written for a large dataset, run on a small one: what no longer fits, fitted before the model is built.

The shared configs are recipes for their dataset (Fashion-MNIST: batch 128, 200 warmup steps, eval
batch 500). A user who points one at a folder of their own (`--config.data.name=image_folder
--config.data.root=DIR`) and shortens the run should not have to find out which of its numbers no
longer fit. `fit_config_to_data`, which the train loop calls once the training split is loaded and
before the model is built, sets what has one obviously right value and logs each change as a
warning (the key, its old and new value, why, and the flag that chooses another); what has none is
refused with a ValueError saying what to set:

- `train.batch_size` larger than the training split (drop-remainder batching could not fill a single
  batch) -> the largest multiple of the device count that the split fills, so an epoch is one batch
  (every process's shard holds batch_size / process_count examples). Fewer training examples than
  devices: refused.
- `train.eval_batch_size` larger than the evaluation split -> the split's size rounded up to a
  multiple of the device count: the same evaluation without the padding rows (a 1000-image batch for
  4 images costs as much as 1000). The evaluation split is loaded here to count it, so a missing or
  unreadable one is reported now rather than at the first evaluation.
- `optimizer.warmup_steps` >= `train.num_steps` (the learning rate would never reach its peak) -> a
  tenth of the run, rounded down (the shared recipes warm up for 5-7% of theirs).

The loop writes the config after this call, so the workdir's `config.json` holds the values that ran.
Fitting is idempotent: a fitted config is left as it is.
"""

from __future__ import annotations

import logging

import ml_collections
import tensorflow as tf

from vision_jax.data import datasets
from vision_jax.data.dataset_info import DatasetInfo

logger = logging.getLogger(__name__)
WARMUP_SHARE = 10  # a warmup that does not fit becomes num_steps // WARMUP_SHARE


def _count(info: DatasetInfo, ds: tf.data.Dataset, split: str) -> int | None:
    """Examples in the whole split when the info knows them, else the dataset's own (known) size."""
    if split in info.num_examples:
        return int(info.num_examples[split])
    cardinality = int(ds.cardinality())
    return cardinality if cardinality >= 0 else None


def _set(config: ml_collections.ConfigDict, key: str, value: int, reason: str, chosen_as: str) -> str:
    group, name = key.split(".")
    old = config[group][name]
    config[group][name] = value
    message = f"config.{key}={old} {reason}; using {key}={value}, {chosen_as} (set --config.{key} to choose another)"
    logger.warning("%s", message)
    return message


def fit_config_to_data(
    config: ml_collections.ConfigDict,
    train_ds: tf.data.Dataset,
    train_info: DatasetInfo,
    *,
    device_count: int,
    process_count: int,
) -> list[str]:
    """Fits `config.train.batch_size`, `config.train.eval_batch_size` and
    `config.optimizer.warmup_steps` to the data and the run (module docstring), in place.

    Args:
      config: the run's config (`data`, `train` and `optimizer` groups).
      train_ds, train_info: this process's shard of the training split and the dataset's info, as
        `datasets.load(config.data, config.data.train_split, ...)` returned them.
      device_count, process_count: over all processes (jax.device_count(), jax.process_count()).
    Returns:
      The changes made, one message each (also logged as warnings).
    Raises:
      ValueError: the training split has fewer examples than there are devices.
    """
    data, train = config.data, config.train
    changes = []
    num_train = _count(train_info, train_ds, data.train_split)
    if num_train is not None:
        # Shards differ by at most one example; with a count of this shard only, assume the others match.
        smallest_shard = num_train // process_count if data.train_split in train_info.num_examples else num_train
        fitting = smallest_shard * process_count // device_count * device_count
        if fitting == 0:
            raise ValueError(
                f"the training split {data.train_split!r} of {train_info.name} has {num_train} example(s), fewer than "
                f"the {device_count} devices ({process_count} processes): every device needs at least one example "
                "per batch; add examples or run on fewer devices"
            )
        if train.batch_size > fitting:
            changes.append(_set(
                config, "train.batch_size", fitting,
                f"is larger than the {num_train} examples of the training split {data.train_split!r} of "
                f"{train_info.name}, so no batch could be filled",
                f"the most that {device_count} device(s) and {process_count} process(es) can fill",
            ))

    eval_ds, eval_info = datasets.load(data, data.eval_split)
    num_eval = _count(eval_info, eval_ds, data.eval_split)
    if num_eval:
        needed = -(-num_eval // device_count) * device_count
        if train.eval_batch_size > needed:
            changes.append(_set(
                config, "train.eval_batch_size", needed,
                f"is larger than the {num_eval} examples of the evaluation split {data.eval_split!r}, "
                "so most of each batch would be padding",
                f"the split rounded up to a multiple of the {device_count} device(s)",
            ))

    warmup = int(config.optimizer.warmup_steps)
    if warmup > 0 and warmup >= train.num_steps:
        changes.append(_set(
            config, "optimizer.warmup_steps", train.num_steps // WARMUP_SHARE,
            f"is not shorter than the run (train.num_steps={train.num_steps}), so the learning rate would never "
            "reach its peak",
            "a tenth of the run",
        ))
    return changes

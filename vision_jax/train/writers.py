"""Metrics to `metrics.jsonl` and TensorBoard; only process 0 writes."""

from __future__ import annotations

import json
import os

import jax
import numpy as np


class MetricWriter:
    """One JSON object a line: {"step": int, "split": "train"|"eval", <metric>: number, ...}."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        import tensorflow as tf  # TensorBoard event files through tf.summary

        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self._tb = {
            split: tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", split))
            for split in ("train", "eval")
        }
        self._tf = tf

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "split": split, **scalars}) + "\n")
        self._jsonl.flush()
        with self._tb[split].as_default():
            for name, value in scalars.items():
                self._tf.summary.scalar(name, value, step=int(step))
        self._tb[split].flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            for w in self._tb.values():
                w.close()

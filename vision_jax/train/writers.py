"""Metrics to `metrics.jsonl` and TensorBoard; only process 0 writes.

Each (step, split) appears once in both, however often the run was stopped and resumed: a run
that resumes from step S first drops the rows of the steps after S (the state that produced
them was lost with the process, and the resumed run logs those steps again).

TensorBoard gets one event file per split for the whole run
(`tensorboard/<split>/events.out.tfevents.0.vision_jax`), appended to on every resume, with
each metric a `simple_value` scalar: the form that TensorBoard's `EventAccumulator`
(`Tags()["scalars"]`) and `tf.compat.v1.train.summary_iterator` readers expect. tf.summary's
writer does neither (it writes scalars as tensors and opens a new file on every start), so the
records are written here with TensorBoard's own `RecordWriter` and protos.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import time
from typing import Callable

import jax
import numpy as np

SPLITS = ("train", "eval")
EVENT_FILE_NAME = "events.out.tfevents.0.vision_jax"
_FILE_VERSION = "brain.Event:2"


class MetricWriter:
    """One JSON object a line, `{"step": int, "split": "train"|"eval", <metric>: number, ...}`,
    and the same numbers as TensorBoard scalars.

    `start_step`: the step the run starts (or resumes) from; rows of later steps are dropped.
    `rewrite_eval_at_start`: also drop the eval row of `start_step` (a finished run that is
    evaluated again writes it anew).
    """

    def __init__(self, workdir: str, start_step: int = 0, rewrite_eval_at_start: bool = False):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return

        def keep(step: int, split: str) -> bool:
            return step < start_step or (step == start_step and not (rewrite_eval_at_start and split == "eval"))

        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        _drop_json_rows(path, keep)
        self._jsonl = open(path, "a")
        self._events = {
            split: _EventFile(os.path.join(workdir, "tensorboard", split), lambda step, split=split: keep(step, split))
            for split in SPLITS
        }

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "split": split, **scalars}) + "\n")
        self._jsonl.flush()
        self._events[split].write(int(step), scalars)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            for events in self._events.values():
                events.close()


def _drop_json_rows(path: str, keep: Callable[[int, str], bool]) -> None:
    """Rewrites `path` (atomically) without the rows `keep` refuses and without a last line cut
    short by a killed process; leaves the file untouched when there is nothing to drop."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        content = f.read()
    lines = content.splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if keep(int(row["step"]), row["split"]):
            kept.append(line)
    if not content or (len(kept) == len(lines) and content.endswith("\n")):
        return
    _replace(path, "".join(line + "\n" for line in kept).encode())


def _replace(path: str, content: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), ".rewrite.tmp")  # not "*tfevents*": TensorBoard would read it
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _EventFile:
    """The split's one event file, opened for appending after dropping the events whose step
    `keep_step` refuses. Event files of other writers in the folder (tf.summary's, from runs of
    older versions) are merged into it first, their tensor scalars turned into simple values."""

    def __init__(self, directory: str, keep_step: Callable[[int], bool]):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, EVENT_FILE_NAME)
        others = sorted(p for p in glob.glob(os.path.join(directory, "*tfevents*")) if p != self.path)
        ours, ours_complete = _read_events(self.path) if os.path.exists(self.path) else ([], True)
        older = [event for other in others for event in _read_events(other)[0]]
        events = older + ours
        kept = [event for event in events if keep_step(event.step)]
        if others or not ours_complete or len(kept) < len(events):
            records = [self._version_event()] + _last_value_per_step([_as_simple_values(e) for e in kept])
            _replace(self.path, b"".join(_record(event.SerializeToString()) for event in records))
            for other in others:
                os.remove(other)
        new_file = not os.path.exists(self.path)
        self._records = RecordWriter(open(self.path, "ab"))
        if new_file:
            self._records.write(self._version_event().SerializeToString())
            self._records.flush()

    def _version_event(self):
        return self._event_pb2.Event(wall_time=time.time(), file_version=_FILE_VERSION)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        values = [summary_pb2.Summary.Value(tag=name, simple_value=value) for name, value in scalars.items()]
        summary = summary_pb2.Summary(value=values)
        event = self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._records.write(event.SerializeToString())
        self._records.flush()

    def close(self) -> None:
        self._records.close()


def _record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _read_events(path: str) -> tuple[list, bool]:
    """The summary events of an event file (its file-version record left out), and whether the
    file ended on a whole record (False: a process was killed while writing the last one)."""
    from tensorboard.compat.proto import event_pb2

    with open(path, "rb") as f:
        content = f.read()
    events, offset = [], 0
    while offset + 12 <= len(content):
        (length,) = struct.unpack("<Q", content[offset : offset + 8])
        end = offset + 12 + length + 4
        if end > len(content):
            break
        event = event_pb2.Event.FromString(content[offset + 12 : offset + 12 + length])
        if event.HasField("summary"):
            events.append(event)
        offset = end
    return events, offset == len(content)


def _last_value_per_step(events: list) -> list:
    """`events` with each (step, tag) only in its last event (older writers logged the steps
    between a checkpoint and a restart twice)."""
    seen, result = set(), []
    for event in reversed(events):
        values = [v for v in event.summary.value if (event.step, v.tag) not in seen]
        seen.update((event.step, v.tag) for v in values)
        if values:
            del event.summary.value[:]
            event.summary.value.extend(values)
            result.append(event)
    return result[::-1]


def _as_simple_values(event):
    """`event` with its scalar tensor summaries (tf.summary.scalar's form) as simple values."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    values = []
    for value in event.summary.value:
        if value.HasField("tensor"):
            array = tensor_util.make_ndarray(value.tensor)
            if array.size != 1 or not np.issubdtype(array.dtype, np.number):
                values.append(value)
                continue
            value = summary_pb2.Summary.Value(tag=value.tag, simple_value=float(array.reshape(())))
        values.append(value)
    converted = type(event)()
    converted.CopyFrom(event)
    del converted.summary.value[:]
    converted.summary.value.extend(values)
    return converted

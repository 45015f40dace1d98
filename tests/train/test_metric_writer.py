"""metrics.jsonl and TensorBoard across restarts: each (step, split) once, one event file per split,
scalars that TensorBoard's EventAccumulator reads as scalars."""

import glob
import json
import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vision_jax.train.writers import EVENT_FILE_NAME, MetricWriter


def rows(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def scalars(workdir, split, tag):
    accumulator = EventAccumulator(os.path.join(workdir, "tensorboard", split))
    accumulator.Reload()
    assert tag in accumulator.Tags()["scalars"], accumulator.Tags()
    return [(event.step, pytest.approx(event.value)) for event in accumulator.Scalars(tag)]


def event_files(workdir, split):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(workdir, "tensorboard", split, "*tfevents*")))


def write_run(workdir, start_step, train_steps, eval_steps=(), **kwargs):
    writer = MetricWriter(str(workdir), start_step, **kwargs)
    for step in train_steps:
        writer.write(step, "train", {"loss": float(step), "learning_rate": 0.1})
    for step in eval_steps:
        writer.write(step, "eval", {"accuracy": step / 100})
    writer.close()


def test_scalars_are_tensorboard_scalars_in_one_file_per_split(tmp_path):
    write_run(tmp_path, 0, [5, 10], eval_steps=[10])
    assert scalars(tmp_path, "train", "loss") == [(5, 5.0), (10, 10.0)]
    assert scalars(tmp_path, "eval", "accuracy") == [(10, 0.1)]
    assert event_files(tmp_path, "train") == event_files(tmp_path, "eval") == [EVENT_FILE_NAME]


def test_a_resumed_run_drops_rows_after_the_restored_step_and_appends_to_the_same_file(tmp_path):
    write_run(tmp_path, 0, [5, 10, 15, 20], eval_steps=[10, 20])  # killed after step 20, checkpoint at 10
    write_run(tmp_path, 10, [15, 20, 25])  # the resumed run logs 15 and 20 again
    assert [(r["step"], r["split"]) for r in rows(tmp_path)] == [
        (5, "train"), (10, "train"), (10, "eval"), (15, "train"), (20, "train"), (25, "train"),
    ]  # fmt: skip
    assert scalars(tmp_path, "train", "loss") == [(5, 5.0), (10, 10.0), (15, 15.0), (20, 20.0), (25, 25.0)]
    assert scalars(tmp_path, "eval", "accuracy") == [(10, 0.1)]
    assert event_files(tmp_path, "train") == [EVENT_FILE_NAME]


def test_a_finished_run_evaluated_again_replaces_its_last_eval_row(tmp_path):
    write_run(tmp_path, 0, [10, 20], eval_steps=[20])
    writer = MetricWriter(str(tmp_path), 20, rewrite_eval_at_start=True)
    writer.write(20, "eval", {"accuracy": 0.5})
    writer.close()
    assert [(r["step"], r["split"]) for r in rows(tmp_path)] == [(10, "train"), (20, "train"), (20, "eval")]
    assert rows(tmp_path)[-1]["accuracy"] == 0.5
    assert scalars(tmp_path, "eval", "accuracy") == [(20, 0.5)]


def test_a_record_cut_short_by_a_killed_process_is_dropped(tmp_path):
    write_run(tmp_path, 0, [5, 10])
    for path in (tmp_path / "metrics.jsonl", tmp_path / "tensorboard" / "train" / EVENT_FILE_NAME):
        with open(path, "ab") as f:
            f.write(b'\x20\x00\x00\x00{"step": 1')  # half a record / half a line
    write_run(tmp_path, 10, [15])
    assert [r["step"] for r in rows(tmp_path)] == [5, 10, 15]
    assert scalars(tmp_path, "train", "loss") == [(5, 5.0), (10, 10.0), (15, 15.0)]


def test_a_json_line_cut_before_its_newline_is_not_joined_to_the_next(tmp_path):
    write_run(tmp_path, 0, [5])
    content = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(content.rstrip("\n"))
    write_run(tmp_path, 5, [10])
    assert [r["step"] for r in rows(tmp_path)] == [5, 10]


def test_event_files_of_tf_summary_are_merged_into_the_one_file(tmp_path):
    """A workdir written by an older version (tf.summary: tensor scalars, a file per start)."""
    import tensorflow as tf

    for start, steps in ((0, [5, 10, 15]), (10, [15, 20])):
        writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard" / "train"), filename_suffix=f".{start}")
        with writer.as_default():
            for step in steps:
                tf.summary.scalar("loss", float(step), step=step)
        writer.close()
    assert len(event_files(tmp_path, "train")) == 2
    write_run(tmp_path, 15, [20])
    assert event_files(tmp_path, "train") == [EVENT_FILE_NAME]
    assert scalars(tmp_path, "train", "loss") == [(5, 5.0), (10, 10.0), (15, 15.0), (20, 20.0)]

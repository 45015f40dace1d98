"""The train loop from the outside: resume after SIGKILL, non-finite loss, config errors,
and what a run writes into its workdir."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from vision_jax.train.config import load_config_file
from vision_jax.train.loop import NonFiniteLossError, train_and_evaluate

CONFIG = "configs/localization/shapes_resnet18.py"


def tiny_overrides(data_dir, num_steps, checkpoint_every):
    return [
        f"--config.data.data_dir={data_dir}",
        "--config.data.shapes_num_train=64",
        "--config.data.shapes_num_test=32",
        "--config.model.width=4",
        "--config.train.batch_size=8",
        "--config.train.eval_batch_size=16",
        f"--config.train.num_steps={num_steps}",
        f"--config.train.checkpoint_every={checkpoint_every}",
        "--config.train.log_every=5",
        "--config.train.eval_every=1000",
        "--config.train.progress_bar=False",
        "--config.optimizer.warmup_steps=5",
    ]


def train_command(repo_root, workdir, *overrides):
    return [sys.executable, os.path.join(repo_root, "scripts/train.py"), f"--config={os.path.join(repo_root, CONFIG)}", f"--workdir={workdir}", *overrides]


def env():
    return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")


def restore_params(workdir, step):
    path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "default")
    return ocp.StandardCheckpointer().restore(path)["params"]


def checkpoint_steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.slow
def test_sigkill_then_resume_ends_equal_to_uninterrupted_run(repo_root, data_dir, tmp_path):
    steps, every = 60, 10
    overrides = tiny_overrides(data_dir, steps, every)
    straight = tmp_path / "straight"
    done = subprocess.run(train_command(repo_root, straight, *overrides), env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(train_command(repo_root, interrupted, *overrides), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not checkpoint_steps(interrupted) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_steps(interrupted)
    assert killed_at and killed_at[-1] < steps, f"the run was not killed mid-training: checkpoints {killed_at}"

    resumed = subprocess.run(train_command(repo_root, interrupted, *overrides), env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    want, got = restore_params(straight, steps), restore_params(interrupted, steps)
    leaves_want, leaves_got = jax_leaves(want), jax_leaves(got)
    assert len(leaves_want) == len(leaves_got) > 0
    for (path, a), (_, b) in zip(leaves_want, leaves_got):
        np.testing.assert_allclose(b, a, atol=1e-6, err_msg=f"{path} after SIGKILL at checkpoints {killed_at}")
    # The resumed run logged the steps after the checkpoint exactly as the straight run did.
    log = lambda wd: {(r["step"], r["split"]): r for r in map(json.loads, open(wd / "metrics.jsonl"))}
    straight_log, resumed_log = log(straight), log(interrupted)
    # Rows logged after the checkpoint by the killed process were dropped, not written twice.
    resumed_rows = [(r["step"], r["split"]) for r in map(json.loads, open(interrupted / "metrics.jsonl"))]
    assert len(resumed_rows) == len(set(resumed_rows)) and set(resumed_rows) == set(straight_log)
    assert straight_log[(steps, "eval")]["correct_localization"] == resumed_log[(steps, "eval")]["correct_localization"]
    np.testing.assert_allclose(resumed_log[(steps, "train")]["loss"], straight_log[(steps, "train")]["loss"], rtol=1e-5)


def jax_leaves(tree):
    import jax

    return [(jax.tree_util.keystr(p), np.asarray(v)) for p, v in jax.tree_util.tree_leaves_with_path(tree)]


def load_config(repo_root, data_dir, **train):
    c = load_config_file(os.path.join(repo_root, CONFIG))
    c.data.data_dir, c.data.shapes_num_train, c.data.shapes_num_test = data_dir, 64, 32
    c.model.width, c.train.batch_size, c.train.eval_batch_size = 4, 8, 16
    c.train.progress_bar, c.optimizer.warmup_steps = False, 0
    for key, value in train.items():
        c.train[key] = value
    return c


def test_non_finite_loss_stops_with_the_step_and_keeps_last_checkpoint(repo_root, data_dir, tmp_path):
    c = load_config(repo_root, data_dir, num_steps=20, checkpoint_every=1, log_every=1, eval_every=100)
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.schedule = "sgd", 1e30, "constant"
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as error:
        train_and_evaluate(c, str(tmp_path))
    bad_step = int(error.value.args[0].split("at step ")[1].split()[0])
    kept = checkpoint_steps(tmp_path)
    assert kept and kept[-1] == bad_step - 1, (bad_step, kept)
    params = jax_leaves(restore_params(tmp_path, kept[-1]))
    assert all(np.isfinite(v).all() for _, v in params)


def test_run_writes_metrics_eval_config_and_pictures(repo_root, data_dir, tmp_path):
    c = load_config(repo_root, data_dir, num_steps=10, checkpoint_every=5, log_every=5, eval_every=5)
    results = train_and_evaluate(c, str(tmp_path))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["split"]) for r in records] == [(5, "train"), (5, "eval"), (10, "train"), (10, "eval")]
    assert {"loss", "learning_rate", "images_per_second", "grad_norm"} <= set(records[0])
    assert {"accuracy", "mean_iou", "correct_localization"} == set(results)
    assert records[-1]["correct_localization"] == results["correct_localization"]
    assert json.load(open(tmp_path / "eval" / "step_00000010.json"))["mean_iou"] == pytest.approx(results["mean_iou"])
    assert json.load(open(tmp_path / "config.json"))["train"]["num_steps"] == 10
    assert len([name for name in os.listdir(tmp_path / "pictures") if name[-6:-4].isdigit()]) == c.train.num_pictures
    assert checkpoint_steps(tmp_path) == [5, 10]


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.train.num_stepz=3", "did you mean --config.train.num_steps?"),
        ("--config.train.num_steps=three", "--config.train.num_steps=three"),
        ("--config.data.shapes_num_train=twelve", "--config.data.shapes_num_train=twelve"),
    ],
)
def test_misspelled_key_or_wrong_type_is_refused_by_the_script(repo_root, tmp_path, override, message):
    done = subprocess.run(train_command(repo_root, tmp_path, override), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last_lines = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    assert message in last_lines, last_lines
    assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize(
    "key, value, message",
    [("data.name", "imagenet2021", "imagenet2021"), ("train.batch_size", 0, "batch_size"), ("model.backbone", "resnet19", "resnet19")],
)
def test_bad_values_are_refused_before_training(repo_root, data_dir, tmp_path, key, value, message):
    c = load_config(repo_root, data_dir)
    section, name = key.split(".")
    c[section][name] = value
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(c, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints") or checkpoint_steps(tmp_path) == []


def test_workdir_that_cannot_be_written_is_refused_before_training(repo_root, data_dir, tmp_path):
    """A workdir below a regular file cannot be created (whoever runs the test, root included)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"--workdir '.*a_file/run' cannot be written: Not a directory"):
        train_and_evaluate(load_config(repo_root, data_dir), str(blocker / "run"))


def test_sigterm_saves_a_checkpoint_and_stops(repo_root, data_dir, tmp_path):
    """SIGTERM (preemption) during training: the loop saves the step it reached and returns."""
    import threading

    c = load_config(repo_root, data_dir, num_steps=100_000, checkpoint_every=100_000, log_every=5, eval_every=100_000)

    def preempt_when_training():
        deadline = time.time() + 300
        while time.time() < deadline:
            if os.path.exists(tmp_path / "metrics.jsonl") and os.path.getsize(tmp_path / "metrics.jsonl") > 0:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    threading.Thread(target=preempt_when_training, daemon=True).start()
    assert train_and_evaluate(c, str(tmp_path)) == {}  # no evaluation passes for the final one
    kept = checkpoint_steps(tmp_path)
    assert len(kept) == 1 and 5 <= kept[0] < 100_000, kept
    last_logged = max(json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl"))
    assert kept[0] >= last_logged

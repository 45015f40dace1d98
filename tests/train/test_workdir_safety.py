"""A researcher's habits against a workdir: resume with a changed config, Ctrl-C then rerun, output
redirected to a file, evaluate/predict without --config. Each test checks the behaviour and that
the workdir's checkpoints and records are intact.

One tiny run (localization, width 4, 10 steps, checkpoints at 5 and 10) is trained once for the
module; each test works on a copy of it.
"""

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from command_line import command_line_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vision_jax.train import run_config
from vision_jax.train.loop import train_and_evaluate
from vision_jax.train.resume import ResumeRefusedError

CONFIG = "configs/localization/shapes_resnet18.py"
WAIT_S = 600  # generous: the machine is shared


def overrides(data_dir, **train):
    settings = {"num_steps": 10, "checkpoint_every": 5, "log_every": 5, "eval_every": 1000, **train}
    return [
        f"--config.data.data_dir={data_dir}",
        "--config.data.shapes_num_train=64",
        "--config.data.shapes_num_test=32",
        "--config.model.width=4",
        "--config.train.batch_size=8",
        "--config.train.eval_batch_size=16",
        "--config.optimizer.warmup_steps=2",
        "--config.train.progress_bar=False",
        *(f"--config.train.{key}={value}" for key, value in settings.items()),
    ]


def env():
    return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")


def script(repo_root, name, *args):
    return [sys.executable, os.path.join(repo_root, "scripts", name), *args]


def run_script(repo_root, name, *args):
    return subprocess.run(script(repo_root, name, *args), env=env(), capture_output=True, text=True, timeout=WAIT_S)


def snapshot(directory, skip=()):
    """Relative path -> sha256 of every file under `directory`, except under the `skip` folders."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if not relative.startswith(tuple(skip)):
                files[relative] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return files


def rows(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def checkpoint_steps(workdir):
    return sorted(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.isdigit())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def trained(repo_root, data_dir, tmp_path_factory):
    """(workdir, its final eval) of the module's one run."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    results = train_and_evaluate(command_line_config(repo_root, CONFIG, *overrides(data_dir)), str(workdir))
    return workdir, results


@pytest.fixture
def workdir(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    return copy


def test_resume_with_a_changed_width_is_refused_naming_the_key(repo_root, data_dir, workdir):
    before = snapshot(workdir)
    args = [f"--config={os.path.join(repo_root, CONFIG)}", f"--workdir={workdir}", *overrides(data_dir, num_steps=20)]
    done = run_script(repo_root, "train.py", *args, "--config.model.width=8")
    assert done.returncode == 1, done.stderr[-3000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: Not restoring the checkpoint"), last_line
    assert "model.width (4 saved, 8 now)" in last_line, last_line
    assert "train.num_steps" not in last_line  # changed too, but it does not change the state's shapes
    assert "Traceback" not in done.stderr and "ImportError" not in done.stderr
    assert snapshot(workdir) == before  # checkpoints, config.json, history and metrics untouched


def test_resume_with_another_optimizer_is_refused_before_restoring(repo_root, data_dir, workdir):
    before = snapshot(workdir)
    config = command_line_config(
        repo_root, CONFIG, *overrides(data_dir), "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=0.01"
    )
    with pytest.raises(ResumeRefusedError, match=r"optimizer\.name \('adamw' saved, 'sgd' now\) changes") as error:
        train_and_evaluate(config, str(workdir))
    assert "learning_rate" not in str(error.value)
    assert snapshot(workdir) == before


def test_resume_with_a_changed_learning_rate_is_warned_recorded_and_continues(repo_root, data_dir, workdir, caplog):
    rows_before = rows(workdir)
    changed = [*overrides(data_dir, num_steps=15), "--config.optimizer.learning_rate=1e-4"]
    config = command_line_config(repo_root, CONFIG, *changed)
    with caplog.at_level(logging.WARNING, logger="vision_jax.train.loop"):
        results = train_and_evaluate(config, str(workdir))
    assert results  # ran to its (new) last step
    warning = " ".join(r.getMessage() for r in caplog.records if "changed config" in r.getMessage())
    assert "at step 10" in warning and "config_history.jsonl" in warning, warning
    assert "optimizer.learning_rate 0.003 -> 0.0001" in warning and "train.num_steps 10 -> 15" in warning, warning
    history = run_config.read_history(str(workdir))
    assert [(entry["step"], sorted(entry["changed"])) for entry in history] == [
        (0, []),
        (10, ["optimizer.learning_rate", "train.num_steps"]),
    ]
    assert history[0]["config"]["optimizer"]["learning_rate"] == 3e-3  # the first version is kept
    assert json.load(open(workdir / "config.json"))["optimizer"]["learning_rate"] == 1e-4
    assert checkpoint_steps(workdir) == [5, 10, 15]
    assert rows(workdir)[: len(rows_before)] == rows_before
    logged = [(r["step"], r["split"]) for r in rows(workdir)]
    assert logged == [(5, "train"), (10, "train"), (10, "eval"), (15, "train"), (15, "eval")]


def test_evaluate_and_predict_without_config_use_the_workdir_s_config(repo_root, trained, workdir):
    before = snapshot(workdir, skip=("eval", "predictions"))
    done = run_script(repo_root, "evaluate.py", f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["step"] == 10 and report["split"] == "test"
    # The run's own data (its data_dir and split sizes are overrides) and weights: the run's numbers.
    assert report["correct_localization"] == pytest.approx(trained[1]["correct_localization"])

    args = [f"--workdir={workdir}", "--num_images=3", "--config.train.eval_batch_size=8"]  # an override on top
    done = run_script(repo_root, "predict.py", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(name for name in os.listdir(workdir / "predictions") if name[-6:-4].isdigit()) == [
        "prediction_00.png", "prediction_01.png", "prediction_02.png",
    ]  # fmt: skip
    assert snapshot(workdir, skip=("eval", "predictions")) == before


def test_sigint_mid_run_saves_and_stops_then_the_rerun_has_no_duplicate_rows(repo_root, data_dir, trained, tmp_path):
    """Ctrl-C on a run whose output goes to files (a cluster job's log): it saves, says so in one
    line and exits 0; its log has a plain line every log_every steps and no carriage return.
    (`trained` has generated the dataset, whose progress bars would otherwise be in the log.)"""
    steps, log_every = 200, 5
    workdir = tmp_path / "run"
    args = [f"--config={os.path.join(repo_root, CONFIG)}", f"--workdir={workdir}"]
    args += overrides(data_dir, num_steps=steps, checkpoint_every=1000, log_every=log_every)
    args.remove("--config.train.progress_bar=False")  # the bar's default: on, yet the output is a file
    with open(tmp_path / "out1", "w") as out, open(tmp_path / "err1", "w") as err:
        # Ctrl-C's default action in the child, even when pytest runs as a background job ignoring SIGINT
        # (which the child would inherit, and the loop leaves alone).
        process = subprocess.Popen(script(repo_root, "train.py", *args), env=env(), stdout=out, stderr=err,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + WAIT_S
        while process.poll() is None and time.time() < deadline:
            if os.path.exists(workdir / "metrics.jsonl") and os.path.getsize(workdir / "metrics.jsonl") > 0:
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
        returncode = process.wait(timeout=WAIT_S)
    stdout, stderr = (tmp_path / "out1").read_text(), (tmp_path / "err1").read_text()
    assert returncode == 0, stderr[-3000:]
    stopped = [line for line in stdout.splitlines() if line.startswith("SIGINT")]
    assert len(stopped) == 1 and "Traceback" not in stderr, stdout + stderr[-3000:]
    stop_step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert checkpoint_steps(workdir) == [stop_step] and stop_step < steps
    assert max(r["step"] for r in rows(workdir)) <= stop_step
    first_log = [line for line in stdout.splitlines() if line.startswith(f"step {log_every}/{steps}  loss ")]
    assert len(first_log) == 1, stdout
    assert all(f"  {term} " in first_log[0] for term in ("box_loss", "class_loss", "learning_rate", "images/s", "ETA"))
    assert "\r" not in stdout + stderr

    with open(tmp_path / "out2", "w") as out, open(tmp_path / "err2", "w") as err:
        done = subprocess.run(script(repo_root, "train.py", *args), env=env(), stdout=out, stderr=err, timeout=WAIT_S)
    assert done.returncode == 0, (tmp_path / "err2").read_text()[-3000:]
    assert "final eval" in (tmp_path / "out2").read_text()
    assert checkpoint_steps(workdir) == [stop_step, steps]
    logged = [(r["step"], r["split"]) for r in rows(workdir)]
    assert logged == [(step, "train") for step in range(log_every, steps + 1, log_every)] + [(steps, "eval")]
    accumulator = EventAccumulator(str(workdir / "tensorboard" / "train"))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("loss")] == list(range(log_every, steps + 1, log_every))
    assert len(os.listdir(workdir / "tensorboard" / "train")) == 1

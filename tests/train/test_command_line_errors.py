"""A misspelled or unknown config key on the command line of train.py, evaluate.py or predict.py:
one line naming the key and the likely one, exit code 2, no traceback, nothing written."""

import hashlib
import os
import subprocess
import sys

import pytest

from vision_jax.train import run_config
from vision_jax.train.config import load_config_file

CONFIG = "configs/localization/shapes_resnet18.py"


def env():
    return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")


def snapshot(directory):
    paths = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
    return {os.path.relpath(path, directory): hashlib.sha256(open(path, "rb").read()).hexdigest() for path in paths}


@pytest.fixture
def saved_workdir(repo_root, tmp_path):
    run_config.record_start(str(tmp_path), load_config_file(os.path.join(repo_root, CONFIG)), 0)
    return tmp_path


NUM_STEP = "error: unknown config key --config.train.num_step: config.train has no key 'num_step'; " + (
    "did you mean --config.train.num_steps?"
)
LR = "error: unknown config key --config.optimizer.lr: config.optimizer has no key 'lr'; " + (
    "did you mean --config.optimizer.learning_rate?"
)


@pytest.mark.parametrize(
    "script, override, expected",
    [
        ("train.py", "--config.train.num_step=10", NUM_STEP),
        ("train.py", "--config.optimizer.lr=0.1", LR),
        ("evaluate.py", "--config.train.num_step=10", NUM_STEP),  # no --config: the workdir's own
        ("predict.py", "--config.optimizer.lr=0.1", LR),
    ],
)
def test_misspelled_key_is_one_line_with_the_suggestion(repo_root, saved_workdir, script, override, expected):
    workdir = saved_workdir
    before = snapshot(workdir)
    config = [f"--config={os.path.join(repo_root, CONFIG)}"] if script == "train.py" else []  # else the saved one
    command = [sys.executable, os.path.join(repo_root, "scripts", script), *config, f"--workdir={workdir}", override]
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in done.stderr + done.stdout
    assert snapshot(workdir) == before


def test_a_bad_value_is_one_line_naming_its_key(repo_root, tmp_path):
    command = [
        sys.executable, os.path.join(repo_root, "scripts", "train.py"), f"--config={os.path.join(repo_root, CONFIG)}",
        f"--workdir={tmp_path / 'run'}", "--config.model.localizer.dropout_rate=1.5",
    ]  # fmt: skip
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == "error: config.model.localizer.dropout_rate=1.5 must be in [0, 1)"
    assert "Traceback" not in done.stderr + done.stdout

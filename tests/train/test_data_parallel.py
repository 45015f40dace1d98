"""Data parallelism: 2 devices, 2 processes and 1 device train the same model.

Each configuration runs in its own Python process (the device count is fixed when JAX
starts). Same global batch, 5 steps, cross-replica BatchNorm: losses and parameters must
agree to 1e-5.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "dp_worker.py")


def run_worker(out, *args, devices_flag=None, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    if devices_flag:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_flag}"
    return subprocess.Popen([sys.executable, WORKER, str(out), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "one.npz"
    finish(run_worker(out, "--devices", "1"))
    return dict(np.load(out))


def assert_same_training(reference, other, what):
    np.testing.assert_allclose(other["losses"], reference["losses"], atol=1e-5, err_msg=f"losses, {what}")
    assert set(other) == set(reference)
    for key in reference:
        if key not in ("losses", "num_devices"):
            np.testing.assert_allclose(other[key], reference[key], atol=1e-5, err_msg=f"{key}, {what}")
    # The run must actually train: the loss moves over the 5 steps.
    assert abs(reference["losses"][-1] - reference["losses"][0]) > 1e-3


def test_two_fake_devices_match_one_device(one_device, tmp_path):
    out = tmp_path / "two.npz"
    finish(run_worker(out, "--devices", "2", devices_flag=2))
    two = dict(np.load(out))
    assert int(two["num_devices"]) == 2
    assert_same_training(one_device, two, "2 devices vs 1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_device(one_device, tmp_path):
    """Two processes on localhost (gloo collectives), one CPU device each, half a batch each."""
    out, port = tmp_path / "procs.npz", free_port()
    procs = [run_worker(out, "--process", str(i), "--processes", "2", "--port", str(port)) for i in range(2)]
    for proc in procs:
        finish(proc)
    both = dict(np.load(out))
    assert int(both["num_devices"]) == 2
    assert_same_training(one_device, both, "2 processes vs 1 device")

"""SIGINT and SIGTERM during training: a request to stop after the step, never an exception."""

import os
import signal

from vision_jax.train.loop import StopRequest


def test_ctrl_c_twice_asks_once_and_raises_nothing():
    # Python's own Ctrl-C handler, even when pytest runs as a background job that ignores SIGINT
    # (StopRequest leaves an ignored signal alone: the next test).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stop = StopRequest()
        stop.install()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # impatient: must not interrupt the save
            assert stop.requested and stop.signal_name == "SIGINT"
        finally:
            stop.uninstall()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a shell script
    try:
        stop = StopRequest()
        stop.install()
        os.kill(os.getpid(), signal.SIGINT)
        stop.uninstall()
        assert not stop.requested
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)

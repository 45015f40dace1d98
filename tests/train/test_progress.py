"""Progress output: plain lines when the output is a file, tqdm's bar on a terminal."""

import io

from vision_jax.train.progress import Progress, line

SUMMARY = {"loss": 0.81234, "box_loss": 0.25, "grad_norm": 1.5, "learning_rate": 0.003, "images_per_second": 412.4}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(progress, steps=range(1, 101), log_every=50):
    for step in steps:
        progress.update()
        if step % log_every == 0:
            progress.log(step, SUMMARY, seconds_per_step=0.5)
    progress.message("step 100 eval: accuracy=0.5000")
    progress.close()


def test_output_to_files_is_a_plain_line_every_log_step_and_no_carriage_return():
    stdout, stderr = io.StringIO(), io.StringIO()
    run(Progress(100, 0, bar=True, stdout=stdout, stderr=stderr))
    assert stdout.getvalue().splitlines() == [
        "step 50/100  loss 0.8123  box_loss 0.25  grad_norm 1.5  learning_rate 0.003  images/s 412  ETA 0:00:25",
        "step 100/100  loss 0.8123  box_loss 0.25  grad_norm 1.5  learning_rate 0.003  images/s 412  ETA 0:00:00",
        "step 100 eval: accuracy=0.5000",
    ]
    assert stderr.getvalue() == ""
    assert "\r" not in stdout.getvalue()


def test_a_terminal_gets_the_bar_and_no_lines():
    stdout, stderr = Terminal(), Terminal()
    run(Progress(100, 0, bar=True, stdout=stdout, stderr=stderr))
    assert "\r" in stderr.getvalue() and "100/100" in stderr.getvalue()
    assert stdout.getvalue().splitlines() == ["step 100 eval: accuracy=0.5000"]


def test_stdout_to_a_file_with_stderr_on_a_terminal_gets_both():
    stdout, stderr = io.StringIO(), Terminal()
    run(Progress(100, 0, bar=True, stdout=stdout, stderr=stderr))
    assert "\r" in stderr.getvalue()
    heads = [text.split("  ")[0] for text in stdout.getvalue().splitlines()]
    assert heads == ["step 50/100", "step 100/100", "step 100 eval: accuracy=0.5000"]


def test_progress_bar_off_prints_lines_on_a_terminal_too():
    stdout, stderr = Terminal(), Terminal()
    run(Progress(100, 0, bar=False, stdout=stdout, stderr=stderr))
    assert stderr.getvalue() == ""
    assert len(stdout.getvalue().splitlines()) == 3


def test_eta_counts_the_steps_left_at_the_measured_pace():
    assert line(1000, 1500, {"loss": 1.0}, seconds_per_step=2.0).endswith("ETA 0:16:40")

"""Progress of a run: tqdm's bar on a terminal, plain lines in a log file.

A bar redrawn with carriage returns is unreadable in a file (one line of tens of thousands of
characters), and a cluster job's output is a file. So the bar is drawn only when stderr (tqdm's
stream) is a terminal, and a plain line goes to stdout every `log_every` steps whenever stdout is
not a terminal or there is no bar:

    step 500/1500  loss 0.4123  box_loss 0.1021  grad_norm 1.532  learning_rate 0.003  images/s 412  ETA 0:04:10
"""

from __future__ import annotations

import datetime
import sys


class Progress:
    """`update()` after every step, `log(step, summary)` every `log_every` steps (summary: the mean
    metrics since the last log, `images_per_second` among them), `message(text)` for any other
    line, `close()` at the end."""

    def __init__(self, num_steps: int, start_step: int, bar: bool, stdout=None, stderr=None):
        self.stdout = stdout or sys.stdout
        stderr = stderr or sys.stderr
        self.num_steps = num_steps
        self._bar = None
        if bar and _is_terminal(stderr):
            from tqdm import tqdm

            self._bar = tqdm(
                total=num_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True, file=stderr
            )
        self._lines = self._bar is None or not _is_terminal(self.stdout)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def log(self, step: int, summary: dict[str, float], seconds_per_step: float) -> None:
        """`seconds_per_step`: measured over the steps since the previous log."""
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{summary.get('loss', float('nan')):.4f}", img_s=f"{summary.get('images_per_second', 0):.0f}"
            )
        if self._lines:
            self._print(line(step, self.num_steps, summary, seconds_per_step))

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stdout)
            self.stdout.flush()
        else:
            self._print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _print(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)


def line(step: int, num_steps: int, summary: dict[str, float], seconds_per_step: float) -> str:
    """`step 50/1500  loss 0.8123  ...  learning_rate 0.003  images/s 412  ETA 0:05:12`: the loss
    first, the other metrics in their order, throughput and the time left at the current pace."""
    names = ["loss"] * ("loss" in summary) + [k for k in summary if k not in ("loss", "images_per_second")]
    parts = [f"step {step}/{num_steps}"] + [f"{name} {summary[name]:.4g}" for name in names]
    if "images_per_second" in summary:
        parts.append(f"images/s {summary['images_per_second']:.0f}")
    eta = datetime.timedelta(seconds=round(max(num_steps - step, 0) * seconds_per_step))
    parts.append(f"ETA {eta}")
    return "  ".join(parts)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""Progress of a long run on a terminal: 'window 2/5: step 7/20, 0:41 left' on stderr.

The line is rewritten in place after every denoising step; the time left is the time per step
so far times the steps still to run (every window runs the same plan). Silent off a terminal or
when quiet, so logs and pipes stay clean. Knows nothing about models beyond those two counts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def clock_time(seconds: float) -> str:
    """0:41, 12:05, 1:02:03."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts windows and steps; `step(i)` is the pipeline's per-step callback (i = 1 .. steps)."""

    def __init__(
        self,
        steps: int,
        windows: int,
        quiet: bool,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.steps, self.windows, self.clock = steps, windows, clock
        self.window, self.width = 0, 0
        self.enabled = not quiet and sys.stderr.isatty()
        self.started = clock()

    def line(self, i: int) -> str:
        """The text after step i of the current window."""
        done = (self.window - 1) * self.steps + i
        left = (self.clock() - self.started) / done * (self.windows * self.steps - done)
        return (
            f"window {self.window}/{self.windows}: step {i}/{self.steps}, {clock_time(left)} left"
        )

    def step(self, i: int) -> None:
        self.window += i == 1
        if not self.enabled:
            return
        text = self.line(i)
        self.width = max(self.width, len(text))
        sys.stderr.write(f"\r{text:<{self.width}}")
        sys.stderr.flush()

    def close(self) -> None:
        """End the progress line (call once, also when the run fails)."""
        if self.enabled and self.window:
            sys.stderr.write("\n")
            sys.stderr.flush()

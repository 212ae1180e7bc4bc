"""Stopping on a signal: SIGTERM (what systemd, `docker stop` and ROS launch send) is handled
exactly like Ctrl-C, so every clean-up written for KeyboardInterrupt (temporary outputs deleted,
the trainer's checkpoint saved) also runs when a supervisor stops the process.

All three command lines (`lgcvd-run`, `lgcvd-train`, `lgcvd-export`) run inside
`sigterm_as_interrupt()` and exit with `exit_code(err)`: 130 for Ctrl-C, 143 (128 + 15) for
SIGTERM, the codes a shell reports for a process ended by those signals.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread wherever it was running."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread.
    Outside the main thread signals cannot be handled and the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_word(err: KeyboardInterrupt) -> str:
    """How a stop is told to the user: "terminated" (SIGTERM) or "interrupted" (Ctrl-C)."""
    return "terminated" if isinstance(err, Terminated) else "interrupted"


def exit_code(err: KeyboardInterrupt) -> int:
    """The exit status for a run stopped by `err`: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + signal.SIGTERM if isinstance(err, Terminated) else 128 + signal.SIGINT


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM are held back and take effect when it ends: for steps
    that must finish once begun (an optimizer update, the checkpoint saved on a stop, the renames
    that put a finished output in place). Outside the main thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in stops}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])  # now handled as it would have been without the block

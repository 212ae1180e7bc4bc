"""Stopping on a signal: SIGTERM (what systemd, `docker stop` and ROS launch send) and SIGHUP
(the terminal closed) are handled exactly like Ctrl-C, so every clean-up written for
KeyboardInterrupt (temporary outputs deleted, the trainer's checkpoint saved) also runs when a
supervisor stops the process. A SIGHUP that is ignored (`nohup`) stays ignored.

Every command line runs inside `sigterm_as_interrupt()` through the chassis
(`cli/chassis.py`), and a batch command stopped before its end exits with `exit_code(err)`: 130
for Ctrl-C, 143 (128 + 15) for SIGTERM, 129 for SIGHUP, the codes a shell reports for a process
ended by those signals.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`signum`) arrived; raised in the main thread wherever it was running."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _stops() -> tuple[int, ...]:
    """The signals handled like Ctrl-C besides SIGINT: SIGTERM, and SIGHUP unless ignored."""
    hangup = signal.getsignal(signal.SIGHUP) != signal.SIG_IGN
    return (signal.SIGTERM, signal.SIGHUP) if hangup else (signal.SIGTERM,)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt) in the main
    thread; afterwards their handlers are restored, unless changed within (`ignore_stops`).
    Outside the main thread signals cannot be handled and the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in _stops()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if signal.getsignal(s) is _raise_terminated:
                signal.signal(s, handler)


def ignore_stops() -> None:
    """From now on Ctrl-C, SIGTERM and SIGHUP are ignored: for a process whose work is done and
    that only has to exit. Python's shutdown resets its handlers to the system's, under which a
    stop would end the process silently with the signal's code, however complete its output.
    Outside the main thread this does nothing."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, *_stops()):
            signal.signal(s, signal.SIG_IGN)


def stop_word(err: KeyboardInterrupt) -> str:
    """How a stop is told to the user: "terminated" (SIGTERM), "hung up" (SIGHUP) or
    "interrupted" (Ctrl-C)."""
    if not isinstance(err, Terminated):
        return "interrupted"
    return "hung up" if err.signum == signal.SIGHUP else "terminated"


def exit_code(err: KeyboardInterrupt) -> int:
    """The exit status for a run stopped by `err`: 128 + the signal (143 SIGTERM, 129 SIGHUP,
    130 Ctrl-C)."""
    return 128 + (err.signum if isinstance(err, Terminated) else signal.SIGINT)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C, SIGTERM and SIGHUP are held back and take effect when it ends: for steps
    that must finish once begun (an optimizer update, the checkpoint saved on a stop, the renames
    that put a finished output in place). Outside the main thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stops = (signal.SIGINT, *_stops())
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in stops}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])  # now handled as it would have been without the block

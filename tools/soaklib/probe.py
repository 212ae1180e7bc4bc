"""What a process tree holds now, read from /proc (Linux): resident memory, threads and open
file descriptors, summed over a process and its descendants (a Triton server's backend stubs
are its children). Knows nothing of lgcvd; needs no package beyond the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    """One reading of a process tree: resident memory (MB), threads, open fds, processes, and
    each process's memory ("NAME PID" -> MB), to tell which of a tree grew."""

    rss_mb: float
    threads: int
    fds: int
    processes: int
    rss_by_process: dict[str, float] = field(default_factory=dict)


def _status(pid: int) -> dict[str, str]:
    """/proc/PID/status as field -> value (e.g. VmRSS -> '1234 kB')."""
    lines = (PROC / str(pid) / "status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _parent(pid: str) -> int | None:
    """The parent pid from /proc/PID/stat (its 4th field, after the command in parentheses)."""
    try:
        stat = (PROC / pid / "stat").read_text()
    except OSError:  # the process ended meanwhile
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (parent := _parent(entry)) is not None:
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _one(pid: int) -> Usage | None:
    """The usage of one process, or None if it ended while being read."""
    try:
        status = _status(pid)
        fds = len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return None
    rss_mb = int(status.get("VmRSS", "0 kB").split()[0]) / 1024  # absent for a zombie
    return Usage(rss_mb, int(status["Threads"]), fds, 1, {f"{status['Name']} {pid}": rss_mb})


def usage(pid: int) -> Usage:
    """The usage of `pid` and its descendants, summed; all zero once `pid` has ended."""
    readings = [u for u in map(_one, tree(pid)) if u is not None]
    return Usage(
        sum(u.rss_mb for u in readings),
        sum(u.threads for u in readings),
        sum(u.fds for u in readings),
        len(readings),
        {name: mb for u in readings for name, mb in u.rss_by_process.items()},
    )

"""A soak run's verdict from its samples: after a warm-up, resident memory may grow by at most
`max_growth_mb`, threads and open fds may not end above where they started, the forecast age's
99th percentile stays under `max_age_s`, and nothing fails. Each rule that breaks is one line.

Memory compares medians of two windows: the first `window_s` after the warm-up and the last
`window_s` of the run (window_s: 10 s, or a quarter of the time after warm-up if shorter), so
one allocator step does not count as a leak. Threads and fds compare the least count of the
last window with the most of the first: a pool that grows and shrinks again is not a leak.
Knows nothing of what produced the samples (a sample: time, a `probe.Usage` per target, the
ages observed since the last sample, and running counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from soaklib.probe import Usage


@dataclass(frozen=True)
class Limits:
    """What a run must hold to pass (module header)."""

    warmup_s: float
    max_growth_mb: float = 5.0
    max_age_s: float = 2.0


@dataclass
class Sample:
    """One report of the load: `t` seconds into the run, each target's usage then, the forecast
    ages (s) seen since the previous sample, and the running counts of the run so far."""

    t: float
    usage: dict[str, Usage]
    ages: list[float]
    done: int
    errors: int
    skipped: int | None = None
    first_error: str | None = None
    extra: dict = field(default_factory=dict)


def _windows(samples: list[Sample], warmup_s: float) -> tuple[list[Sample], list[Sample]]:
    """The samples of the first and last window after the warm-up (module header)."""
    after = [s for s in samples if s.t >= warmup_s]
    if not after:
        return [], []
    window = min(10.0, (after[-1].t - warmup_s) / 4)
    first = [s for s in after if s.t <= warmup_s + window]
    last = [s for s in after if s.t >= after[-1].t - window]
    return first, last


def _target(name: str, first: list[Sample], last: list[Sample], limits: Limits):
    """One target's numbers and the rules it broke."""
    rss = [float(np.median([s.usage[name].rss_mb for s in w])) for w in (first, last)]
    numbers: dict = {"rss_mb": {"after_warmup": rss[0], "end": rss[1], "growth": rss[1] - rss[0]}}
    problems = []
    if rss[1] - rss[0] > limits.max_growth_mb:
        problems.append(
            f"{name}: RSS grew {rss[1] - rss[0]:.1f} MB after the {limits.warmup_s:g} s warm-up "
            f"(limit {limits.max_growth_mb:g} MB)"
        )
    for what in ("threads", "fds"):
        start = max(getattr(s.usage[name], what) for s in first)
        end = min(getattr(s.usage[name], what) for s in last)
        numbers[what] = {"after_warmup": start, "end": end}
        if end > start:
            problems.append(f"{name}: {what} {start} -> {end} after warm-up ({end - start} leaked)")
    if any(s.usage[name].processes == 0 for s in last):
        problems.append(f"{name}: the process ended before the run did")
    return numbers, problems


def _ages(samples: list[Sample], limits: Limits) -> tuple[dict, list[str]]:
    ages = [a for s in samples if s.t >= limits.warmup_s for a in s.ages]
    if not ages:
        return {"count": 0}, ["no forecast was seen after the warm-up"]
    median, p99 = (float(np.percentile(ages, q)) for q in (50, 99))
    numbers = {"count": len(ages), "median_s": median, "p99_s": p99, "max_s": max(ages)}
    problems = []
    if p99 > limits.max_age_s:
        problems.append(f"forecast age p99 {p99:.2f} s is over the {limits.max_age_s:g} s bound")
    return numbers, problems


def judge(samples: list[Sample], targets: list[str], limits: Limits) -> dict:
    """The run's numbers, its problems (one line each) and `passed`."""
    first, last = _windows(samples, limits.warmup_s)
    if not first:
        return {"passed": False, "problems": ["the run ended before its warm-up did"]}
    summary: dict = {"targets": {}}
    problems: list[str] = []
    for name in targets:
        summary["targets"][name], broken = _target(name, first, last, limits)
        problems += broken
    summary["age"], broken = _ages(samples, limits)
    problems += broken
    end = samples[-1]
    summary.update(done=end.done, errors=end.errors, skipped=end.skipped, **end.extra)
    if end.errors:
        problems.append(f"{end.errors} errors; the first: {end.first_error}")
    return {**summary, "passed": not problems, "problems": problems}

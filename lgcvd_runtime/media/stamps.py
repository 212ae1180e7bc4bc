"""Frame times of a recorded stream (a camera topic of a robot log): where the timeline breaks
(`breaks`, `segments`: dropped frames, stamps that go backward) and which frames a model running
at its own rate sees (`resample`, by stamp rather than by index). Times are int ns stamps; this
module knows nothing about bags, pictures or models.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lgcvd_runtime.errors import plural

GAP = 1.5  # a stamp step longer than this many frame periods means frames were dropped


@dataclass(frozen=True)
class Break:
    """Where a recording's timeline breaks: before frame `index` the stamps step by `step_ns`,
    more than `GAP` frame periods (dropped frames) or not forward at all (<= 0)."""

    index: int
    step_ns: int

    def describe(self) -> str:
        if self.step_ns == 0:
            return f"stamp repeats at frame {self.index}"
        if self.step_ns < 0:
            return f"stamps go back {-self.step_ns / 1e6:.1f} ms at frame {self.index}"
        return f"{self.step_ns / 1e6:.1f} ms gap (dropped frames) before frame {self.index}"


def frame_period(stamps: Sequence[int]) -> int | None:
    """The median forward stamp step in ns (None where no step goes forward)."""
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    steps = steps[steps > 0]
    return int(np.median(steps)) if steps.size else None


def measured_rate(stamps: Sequence[int]) -> float | None:
    """Frames per second over the unbroken steps (see `breaks`): the mean, so alternating jitter
    does not bias it as the median would (None where no step goes forward)."""
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    period = frame_period(stamps)
    kept = steps[(steps > 0) & (steps <= GAP * period)] if period is not None else steps[:0]
    return 1e9 / float(kept.mean()) if kept.size else None


def breaks(stamps: Sequence[int], period: int | None = None) -> list[Break]:
    """Where the timeline breaks: a step longer than `GAP` periods (`period`, else the median
    step) or one that does not go forward."""
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    period = frame_period(stamps) if period is None else period
    bad = steps <= 0 if period is None else (steps <= 0) | (steps > GAP * period)
    return [Break(int(i) + 1, int(steps[i])) for i in np.flatnonzero(bad)]


def segments(stamps: Sequence[int], period: int | None = None) -> list[tuple[int, int]]:
    """The unbroken runs of frames as (start, end) index pairs, end exclusive: a clip taken
    within one never spans a gap or a backward stamp."""
    cuts = [0, *(b.index for b in breaks(stamps, period)), len(stamps)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def describe_breaks(found: Sequence[Break], frames: int) -> str:
    """One line for the user: how many breaks, and where."""
    return f"{plural(len(found), 'break')} in {plural(frames, 'frame')}: " + "; ".join(
        b.describe() for b in found
    )


@dataclass(frozen=True)
class Resampling:
    """The frames a model running at its own period sees: `indices` into the stamps, one per
    model step; `note` is one line where they are not simply every frame in order."""

    indices: np.ndarray  # (K,) int64
    note: str | None


def nearest(stamps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target time, the index of the stamp nearest to it, the earlier on a tie: the rule
    by which a model running at its own period takes a camera's frames (`resample`, and frame by
    frame the live stream). `stamps` (int64, increasing) must not be empty."""
    after = np.minimum(np.searchsorted(stamps, targets), stamps.size - 1)
    before = np.maximum(after - 1, 0)
    later = targets > last_nearer(stamps[before], stamps[after])
    return np.where(later, after, before).astype(np.int64)


def last_nearer(earlier, later):
    """The last integer time nearer to stamp `earlier` than to stamp `later`, a tie counting as
    nearer to the earlier (`nearest`'s rule; ints or int64 arrays)."""
    return earlier + (later - earlier) // 2


def resample(stamps: Sequence[int], period_ns: int) -> Resampling:
    """Pick, for each model time t0 + k·period_ns (t0 the first stamp), the frame whose stamp is
    nearest (the earlier on a tie): by stamp, not by index, so jitter and a camera rate that is
    not a multiple of the model's are followed. Times run to half a camera period past the last
    stamp, so every pick lies within half a camera period of its time. `stamps` must increase
    (one of `segments`)."""
    stamps = np.asarray(stamps, dtype=np.int64)
    if period_ns <= 0 or stamps.size == 0 or np.any(np.diff(stamps) <= 0):
        raise ValueError("resample needs increasing stamps and a positive period")
    camera = frame_period(stamps) or period_ns  # a lone stamp: the model's own period
    targets = np.arange(stamps[0], stamps[-1] + camera // 2 + 1, period_ns)
    indices = nearest(stamps, targets)
    if np.array_equal(indices, np.arange(stamps.size)):
        return Resampling(indices, None)
    note = (
        f"note: resampled the {measured_rate(stamps):.3g} Hz camera to the model's {1e9 / period_ns:.3g} "
        f"Hz by stamp: {len(indices)} of {plural(stamps.size, 'frame')} used"
    )
    if len(set(indices.tolist())) < len(indices):
        note += ", some twice (the camera is slower than the model)"
    return Resampling(indices, note)

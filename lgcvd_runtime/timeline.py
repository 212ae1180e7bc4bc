"""The video being filled: frames, which of them are known, and how windows fill the rest
(paper §3.2: autoregressive fragments).

A `Timeline` holds a video whose time axis is the fourth from the end, (..., T, 3, H, W) float
frames for the pipeline or (..., T, H, W, 3) uint8 frames for a writer, with leading axes for
cameras and samples, and one known mask over T shared by every row. The masks of the three tasks
(prediction, interpolation with keyframes N-1 apart, generation) are written here once.

Window rule: the next window contains the first unknown frame and starts at most K frames before
it, where it covers the most known frames (the later start on a tie, so that a known frame after
a gap is reached). Its K condition slots hold the known frames nearest to that first unknown
frame: with known frames on both sides inside the window, the nearest after it and the K-1
nearest before it; otherwise the K nearest on the side that has them. The window fills every
unknown frame it covers. Frames before the first unknown one are final: `take_final` hands them
out once each, in order, so a writer can stream the video while it is being made.

Pure numpy and bookkeeping: this module knows nothing about networks, noise or engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lgcvd_runtime.conditioning import ABSENT
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.layout import ModelSpec

TIME_AXIS = -4  # (..., T, 3, H, W) or (..., T, H, W, 3)


def prediction_known(p: int, n: int) -> list[bool]:
    """p given frames, then n to predict."""
    return [True] * p + [False] * n


def interpolation_known(gaps: int, frames: int) -> list[bool]:
    """Keyframes N-1 apart (N = `frames`, the window): G gaps of N-2 frames to fill."""
    step = frames - 1
    return [i % step == 0 for i in range(gaps * step + 1)]


def generation_known(n: int) -> list[bool]:
    return [False] * n


@dataclass(frozen=True)
class WindowPlan:
    """Where one window sits: video frames `cover` (at most N, from `start`), its K condition
    `positions` inside the window (ABSENT: empty slot) and the video frames it fills (`new`)."""

    start: int
    cover: range
    positions: tuple[int, ...]
    new: tuple[int, ...]

    @property
    def span(self) -> slice:
        """The video frames from the first to the last new one (known frames between included)."""
        return slice(self.new[0], self.new[-1] + 1)


class Timeline:
    """A video (..., T, ...) and its known mask, filled window by window."""

    def __init__(self, video: np.ndarray, known: Sequence[bool], spec: ModelSpec):
        if video.ndim < 4 or video.shape[TIME_AXIS] != len(known):
            raise ValueError(f"video {video.shape} does not match a known mask of {len(known)}")
        self.video, self.known, self.spec = video, [bool(k) for k in known], spec
        self.taken = 0  # frames handed out by take_final

    @classmethod
    def prediction(cls, given: np.ndarray, n: int, spec: ModelSpec) -> Timeline:
        """given (..., p, ...) -> a video of p + n frames, the first p known."""
        p = given.shape[TIME_AXIS]
        video = _empty(given, p + n)
        _frames(video, slice(0, p))[...] = given
        return cls(video, prediction_known(p, n), spec)

    @classmethod
    def interpolation(cls, keyframes: np.ndarray, spec: ModelSpec) -> Timeline:
        """keyframes (..., G+1, ...) -> a video with keyframe g at frame g (N-1)."""
        gaps = keyframes.shape[TIME_AXIS] - 1
        known = interpolation_known(gaps, spec.frames)
        video = _empty(keyframes, len(known))
        _frames(video, slice(None, None, spec.frames - 1))[...] = keyframes
        return cls(video, known, spec)

    @classmethod
    def generation(cls, shape: tuple[int, ...], n: int, spec: ModelSpec, dtype=np.float32):
        """An all-unknown video of n frames; `shape` is the lead axes and one frame's shape."""
        lead, frame = shape[: len(shape) - 3], shape[len(shape) - 3 :]
        return cls(_zeros((*lead, n, *frame), dtype), generation_known(n), spec)

    @property
    def length(self) -> int:
        return len(self.known)

    @property
    def final(self) -> int:
        """Frames 0 .. final-1 are known, so final: no window changes them again."""
        return self.known.index(False) if False in self.known else self.length

    @property
    def done(self) -> bool:
        return all(self.known)

    def next_window(self) -> WindowPlan | None:
        """Where the next window goes (the rule in the module header); None when done."""
        return next_window(self.known, self.spec)

    def plans(self) -> list[WindowPlan]:
        """Every window still to come, in order (the rule run on a copy of the known mask),
        e.g. to show progress as "window 2 of 5"."""
        known, out = list(self.known), []
        while (plan := next_window(known, self.spec)) is not None:
            out.append(plan)
            for i in plan.new:
                known[i] = True
        return out

    def window_frames(self, plan: WindowPlan) -> np.ndarray:
        """The frames a window sees: (..., N, ...), zero past the end of the video."""
        shape = list(self.video.shape)
        shape[TIME_AXIS] = self.spec.frames
        window = np.zeros(shape, dtype=self.video.dtype)
        covered = slice(0, len(plan.cover))
        _frames(window, covered)[...] = _frames(
            self.video, slice(plan.cover.start, plan.cover.stop)
        )
        return window

    def fill(self, plan: WindowPlan, x0: np.ndarray) -> None:
        """Write a sampled window x0 (..., N, ...) into the frames the plan fills."""
        for i in plan.new:
            _frames(self.video, i)[...] = _frames(x0, i - plan.start)
            self.known[i] = True

    def write(self, start: int, frames: np.ndarray) -> None:
        """Write frames (..., F, ...) as video frames start .. start+F-1; frames already known
        (given ones inside a window's span) keep their values."""
        for j in range(frames.shape[TIME_AXIS]):
            if not self.known[start + j]:
                _frames(self.video, start + j)[...] = _frames(frames, j)
                self.known[start + j] = True

    def take_final(self) -> np.ndarray:
        """The final frames not handed out yet, (..., F, ...) (F may be 0), in video order."""
        end = self.final
        out = _frames(self.video, slice(self.taken, end)).copy()
        self.taken = max(self.taken, end)
        return out


def next_window(known: Sequence[bool], spec: ModelSpec) -> WindowPlan | None:
    """The window rule (module header) on a known mask; None when every frame is known."""
    if all(known):
        return None
    n, k = spec.frames, spec.cond_slots
    first = list(known).index(False)
    start = max(range(max(0, first - k), first + 1), key=lambda s: (sum(known[s : s + n]), s))
    cover = range(start, min(start + n, len(known)))
    before = [i for i in cover if known[i] and i < first]
    after = [i for i in cover if known[i] and i > first]
    take_before = min(len(before), max(k - 1, 1) if after else k)
    chosen = before[len(before) - take_before :] + after[: k - take_before]
    positions = sorted(i - start for i in chosen)
    positions += [ABSENT] * (k - len(positions))
    return WindowPlan(start, cover, tuple(positions), tuple(i for i in cover if not known[i]))


def _frames(video: np.ndarray, index) -> np.ndarray:
    """video[..., index, :, :, :]: frames along the time axis (a view)."""
    return video[(Ellipsis, index, slice(None), slice(None), slice(None))]


def _empty(like: np.ndarray, length: int) -> np.ndarray:
    shape = list(like.shape)
    shape[TIME_AXIS] = length
    return _zeros(tuple(shape), like.dtype)


def _zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.zeros, or a one-line error when the video cannot fit in memory."""
    try:
        return np.zeros(shape, dtype=dtype)
    except MemoryError:
        gib = np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize / 2**30
        raise LgcvdError(
            f"a video of {shape[TIME_AXIS]} frames x {int(np.prod(shape[:TIME_AXIS]))} rows needs "
            f"{gib:,.0f} GiB, more memory than there is; ask for fewer frames or samples"
        ) from None

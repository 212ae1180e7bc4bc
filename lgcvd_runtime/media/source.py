"""Where a command's input frames come from, and when each was taken: a video file or a camera
topic of a robot log (a rosbag2 folder, a lone .mcap, a ROS 1 .bag), as one stream of stamped
frames, so that predict, interpolate, evaluation and training read both alike.

`stamped_frames` yields (time in ns, uint8 RGB frame): a video's presentation times
(`video.iter_stamped_frames`), a bag's header stamps (`bags.read_stamped_frames`, log times
where the stamps are zero). `read_clip` takes the frames a model sees from frame `start`: by
index where the model records no frame period, else by time at the model's period
(`stamps.resample`: a 30 Hz camera on a 10 Hz model gives every third frame by stamp). Its notes
say once what was resampled and where the input's timeline breaks (`stamps.breaks`: dropped
frames, stamps that go back); a clip never runs past a stamp that goes back. This module knows
nothing about models beyond a period; it must not import torch or onnx.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lgcvd_runtime.errors import LgcvdError, VideoError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.bags import is_bag, read_stamped_frames
from lgcvd_runtime.media.resize import CROP
from lgcvd_runtime.media.stamps import Break, breaks, describe_breaks, resample
from lgcvd_runtime.media.video import iter_stamped_frames

Log = Callable[[str], None]


def stamped_frames(
    path: str | os.PathLike[str],
    topic: str | None = None,
    *,
    start: int = 0,
    size: int | None = None,
    log: Log | None = None,
    framing: Framing = CROP,
) -> Iterator[tuple[int, np.ndarray]]:
    """(time in ns, (H, W, 3) uint8 RGB frame) for frames start, start+1, ... of a video or of
    a bag's image topic `topic` (None: its only one); `size` fits them to (size, size, 3) as
    `framing` says. Errors are the readers' one-line VideoError / BagError."""
    if not is_bag(path):
        if topic is not None:
            raise VideoError(f"{path} is a video, not a bag; --topic applies to bags: drop it")
        yield from iter_stamped_frames(path, start=start, size=size, framing=framing)
        return
    with contextlib.closing(
        read_stamped_frames(path, topic, size=size, log=log, framing=framing)
    ) as frames:
        for i, item in enumerate(frames):
            if i >= start:
                yield item


@dataclass(frozen=True)
class Clip:
    """The frames a model sees: `frames` (T, H, W, 3) uint8 at `stamps` (T,) int64 ns, taken
    from input frames `indices` (T,); `notes`: one line each, resampling and breaks."""

    frames: np.ndarray
    stamps: np.ndarray
    indices: np.ndarray
    notes: tuple[str, ...]


def _read(frames: Iterator[tuple[int, np.ndarray]], count: int, period_ns: int | None):
    """Stamps and frames read until `count` model frames are covered: `count` frames by index,
    else until a stamp reaches the last model time; or the end of the input, or a stamp that
    does not go forward (kept out: a clip never runs across it)."""
    stamps: list[int] = []
    images: list[np.ndarray] = []
    with contextlib.closing(frames):
        for stamp, image in frames:
            if period_ns is not None and stamps and stamp <= stamps[-1]:
                return stamps, images, Break(len(stamps), stamp - stamps[-1])
            stamps.append(stamp)
            images.append(image)
            if period_ns is None and len(stamps) == count:
                break
            if period_ns is not None and stamp >= stamps[0] + (count - 1) * period_ns:
                break
    return stamps, images, None


def read_clip(
    path: str | os.PathLike[str],
    topic: str | None,
    *,
    start: int,
    count: int,
    need: int,
    size: int,
    period_ns: int | None,
    log: Log | None = None,
    framing: Framing = CROP,
) -> Clip:
    """Up to `count` model frames from input frame `start` (see the module header); a
    LgcvdError where fewer than `need` exist."""
    frames = stamped_frames(path, topic, start=start, size=size, log=log, framing=framing)
    stamps, images, stop = _read(frames, count, period_ns)
    if not stamps:
        raise LgcvdError(f"{path} has no frames from frame {start}; pass a smaller --start")
    found = [Break(b.index + start, b.step_ns) for b in breaks(stamps)]
    if stop is not None:
        found.append(Break(stop.index + start, stop.step_ns))
    notes = [describe_breaks(found, len(stamps))] if found else []
    if period_ns is None:
        indices = np.arange(len(stamps))
    else:
        picked = resample(stamps, period_ns)
        indices = picked.indices[:count]
        notes += [picked.note] if picked.note is not None else []
    if len(indices) < need:
        raise LgcvdError(
            f"{path} gives {plural(len(indices), 'frame')} from frame {start}"
            f"{' at the model period' if period_ns is not None else ''}"
            f"{f' before {stop.describe()}' if stop is not None else ''}; the task needs "
            f"{need}: pass an earlier --start or a longer input"
        )
    stamp_array = np.asarray(stamps, dtype=np.int64)
    return Clip(
        np.stack([images[i] for i in indices]), stamp_array[indices], indices + start, tuple(notes)
    )

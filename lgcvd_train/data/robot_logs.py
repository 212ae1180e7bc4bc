"""Robot logs as training data, and the frame period a model is trained at (README, "Train on
robot logs").

A bag (a rosbag2 folder, a lone .mcap, a ROS 1 .bag) or a folder of bags gives one camera topic
each (`--topic`; default: a bag's only image topic). Each bag's timeline is cut where it breaks
(`stamps.segments`: dropped frames, stamps that go back), so no training clip spans a gap; each
unbroken run is resampled by stamp to the training period (`stamps.resample`) and becomes one
video; runs shorter than a clip are skipped with one note on stderr (`bag_clips` cuts the runs
into an evaluation's test clips). `data_period` says which
period a run records in its checkpoint: --frame-rate, else the data's own (the median stamp step
of bags, 1 / fps of videos), else None (generated data and arrays carry no time). This module
turns files into uint8 arrays; it knows nothing about models or training loops. The readers
(PyAV, rosbags) are imported when a file is read, so training on arrays needs neither.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError, VideoError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.stamps import frame_period, resample, segments


def bags_in(path: Path) -> list[Path]:
    """`path` itself where it is a bag, else the bags directly inside the folder, sorted."""
    if not path.exists() or (path.is_file() and path.suffix.lower() not in (".mcap", ".bag")):
        return []  # a generator's name or an array: no reader to import
    from lgcvd_runtime.media.bags import is_bag

    if is_bag(path):
        return [path]
    return sorted(p for p in path.iterdir() if is_bag(p)) if path.is_dir() else []


def data_period(source: str, frame_rate: float | None, topic: str | None) -> float | None:
    """The frame period in seconds to train at and record (module header)."""
    if frame_rate is not None:
        return 1.0 / frame_rate
    path = Path(source).expanduser()
    if bags := bags_in(path):
        from lgcvd_runtime.media.bags import read_stamps

        periods = [frame_period(read_stamps(bag, topic)) for bag in bags]
        known = [p for p in periods if p is not None]
        return float(np.median(known)) / 1e9 if known else None
    if path.is_dir():
        from lgcvd_train.data.videos import VIDEO_SUFFIXES

        files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES]
        rates = [r for r in (_fps(p) for p in files) if r]
        return 1.0 / float(np.median(rates)) if rates else None
    return None


def _fps(path: Path) -> float | None:
    from lgcvd_runtime.media.video import probe

    try:
        return probe(path).fps
    except VideoError:  # an unreadable video is the loader's to report, with the rest
        return None


def load_bags(
    bags: list[Path], image_size: int, min_frames: int, topic: str | None, framing: Framing
) -> list[np.ndarray]:
    """Each unbroken run of each bag's camera, at `framing.period_s` (None: every frame), as
    (T, image_size, image_size, 3) uint8 videos of at least `min_frames` frames."""
    from lgcvd_runtime.media.bags import read_stamped_frames

    period = framing.period_ns
    videos, skipped = [], []
    for bag in bags:
        stamped = list(read_stamped_frames(bag, topic, size=image_size, framing=framing))
        stamps = [s for s, _ in stamped]
        for a, b in segments(stamps):
            picks = np.arange(a, b) if period is None else a + resample(stamps[a:b], period).indices
            if len(picks) < min_frames:
                skipped.append(f"{bag.name} frames {a}..{b - 1} ({plural(len(picks), 'frame')})")
                continue
            videos.append(np.stack([stamped[i][1] for i in picks]))
    if not videos:
        raise DataError(
            f"no unbroken run of {plural(min_frames, 'frame')} in {plural(len(bags), 'bag')}; "
            "record longer runs without dropped frames"
        )
    if skipped:
        print(f"note: skipped runs shorter than a clip: {', '.join(skipped)}", file=sys.stderr)
    return videos


def bag_clips(
    bags: list[Path], image_size: int, length: int, topic: str | None, framing: Framing
) -> list[np.ndarray]:
    """Test clips (length, image_size, image_size, 3) uint8: each unbroken run's non-overlapping
    clips from its first frame, run after run, bag after bag (`load_bags`: at `framing.period_s`,
    never across a break)."""
    runs = load_bags(bags, image_size, length, topic, framing)
    return [run[i : i + length] for run in runs for i in range(0, len(run) - length + 1, length)]

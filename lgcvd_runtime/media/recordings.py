"""Clips of frames from a data path: a video array, a video file, a robot log's camera topic, or a
folder of videos and logs, each fitted to the model's square the one way the runtime fits frames.

`data_clips` is what calibrating a bundle's input score reads (`cli.calibrate`, lgcvd-export
--calibrate). An array (.npy/.npz, N×T×H×W×3 uint8, `arrays.load_videos`) gives one clip per
video, its frames fitted with `resize.fit_frame` where they are of another size. Every other
recording is read through `source.stamped_frames` (the reader predict and interpolate use): at
the model's frame period where the framing records one (`stamps.resample` on each unbroken run,
`stamps.segments`), else every frame, and cut into clips of `length` frames (the last one
shorter, or dropped below `least`), so that one long video gives many clips. A folder is
searched for videos and arrays (by suffix) and bags, sorted. An unreadable recording is its
reader's one-line error, never skipped: the clips are what the user named. This module knows no
model, engine or torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.arrays import ARRAY_SUFFIXES, is_array, load_videos
from lgcvd_runtime.media.bags import is_bag
from lgcvd_runtime.media.resize import CROP, fit_frame
from lgcvd_runtime.media.source import stamped_frames
from lgcvd_runtime.media.stamps import resample, segments

VIDEO_SUFFIXES = (".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpg", ".webm")
READABLE = (*VIDEO_SUFFIXES, *ARRAY_SUFFIXES)
READS = "a .npy/.npz video array, a video, a folder of videos, or a bag"


def recordings(path: Path) -> list[Path]:
    """The recordings a data path names: itself (a file or a rosbag2 folder), else the videos,
    arrays and bags in the folder and its subfolders, sorted; a DataError where there are none."""
    if not path.exists():
        raise DataError(f"{path} does not exist; pass {READS}")
    if path.is_file() or is_bag(path):
        return [path]
    found = _search(path)
    if not found:
        raise DataError(f"{path} holds no videos ({', '.join(READABLE)}) or bags; pass {READS}")
    return found


def _search(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if is_bag(entry) or entry.suffix.lower() in READABLE and entry.is_file():
            found.append(entry)
        elif entry.is_dir():
            found += _search(entry)
    return found


def _fitted(videos: np.ndarray, size: int, framing: Framing) -> list[np.ndarray]:
    """(N, T, H, W, 3) -> N clips (T, size, size, 3), fitted where they are of another size."""
    if videos.shape[2:4] == (size, size):
        return list(videos)
    return [np.stack([fit_frame(f, size, framing) for f in video]) for video in videos]


def _runs(path: Path, topic: str | None, size: int, framing: Framing, log) -> list[np.ndarray]:
    """A recording's frames (T, size, size, 3): one run by index, or each unbroken run
    resampled at the framing's period."""
    stamped = list(stamped_frames(path, topic, size=size, framing=framing, log=log))
    frames = np.stack([frame for _, frame in stamped])
    if framing.period_s is None:
        return [frames]
    stamps = [stamp for stamp, _ in stamped]
    return [
        frames[a + resample(stamps[a:b], framing.period_ns).indices] for a, b in segments(stamps)
    ]


def data_clips(
    path: Path,
    size: int,
    length: int,
    *,
    least: int = 1,
    topic: str | None = None,
    framing: Framing = CROP,
    log: Callable[[str], None] | None = None,
) -> list[np.ndarray]:
    """Clips (T, size, size, 3) uint8 of the data at `path` (module header): an array's videos,
    or each recording cut into clips of `length` frames, a last one shorter than `least`
    dropped; `topic`: the bags' camera topic."""
    found = recordings(Path(path))
    if topic is not None and not any(is_bag(p) for p in found):
        raise DataError(f"{path} holds no bag; --topic applies to bags: drop it")
    clips = []
    for recording in found:
        if is_array(recording):
            clips += _fitted(load_videos(recording), size, framing)
            continue
        camera = topic if is_bag(recording) else None
        for run in _runs(recording, camera, size, framing, log):
            clips += [run[i : i + length] for i in range(0, len(run) - least + 1, length)]
    return clips

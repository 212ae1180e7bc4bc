"""A folder of the user's own videos as training clips (README, "Train on your own videos").

Every video file under the folder (recursively, sorted) is decoded with the runtime's reader
and fitted to image_size as a `Framing` says. Files that cannot be read or are too short are
skipped and summarised in one line on stderr ("note: skipped ..."); a folder that yields nothing
is a one-line DataError. A long video holds many clips: for training it is cut into as many
pieces as it holds clips (`pieces`, each piece the frames of an equal share of the clip starts,
so every start stays reachable and a video is drawn in proportion to its length); for testing,
`first_clips` takes its non-overlapping clips (stride = clip length) from frame 0, decoding no
further than it needs. This module only turns files into uint8 arrays; it knows nothing about
windows or tasks.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError, VideoError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP
from lgcvd_runtime.media.video import iter_frames, read_frames

VIDEO_SUFFIXES = (
    ".avi", ".flv", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ogv", ".webm",
    ".wmv",
)  # fmt: skip


def _problem(err: VideoError, path: Path) -> str:
    """The short problem in a reader error: "{path} <problem>; <fix>" -> "<problem>"."""
    return str(err).removeprefix(f"{path} ").split(";")[0]


def video_paths(folder: Path) -> list[Path]:
    """The video files under `folder`, sorted; a DataError if it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"video folder {folder} does not exist; pass a folder of video files")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not paths:
        raise DataError(
            f"video folder {folder} holds no video files ({' '.join(VIDEO_SUFFIXES)}); "
            "add videos or pass another folder"
        )
    return paths


def cut(video: np.ndarray, length: int) -> list[np.ndarray]:
    """(T, ...) -> T // length pieces (views): piece k holds the clips of `length` frames that
    start in the k-th of T // length near-equal shares of the starts 0 .. T - length."""
    starts = np.array_split(np.arange(len(video) - length + 1), len(video) // length)
    return [video[share[0] : share[-1] + length] for share in starts]


def load_video_folder(
    folder: Path,
    image_size: int,
    min_frames: int,
    framing: Framing = CROP,
    pieces: bool = False,
) -> list[np.ndarray]:
    """Decode every video under `folder` -> list of (T_i, image_size, image_size, 3) uint8, each
    cut into pieces of clips of `min_frames` (`cut`) with `pieces`.

    Videos with fewer than `min_frames` frames, or that cannot be decoded, are skipped with one
    note on stderr listing them. Raises DataError if the folder is missing or holds nothing usable.
    """
    folder = Path(folder)
    paths = video_paths(folder)
    clips: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            frames = read_frames(path, size=image_size, framing=framing)  # (T, S, S, 3)
        except VideoError as err:
            skipped.append(f"{name} ({_problem(err, path)})")
            continue
        if len(frames) < min_frames:
            skipped.append(f"{name} ({plural(len(frames), 'frame')} < {min_frames})")
            continue
        clips.extend(cut(frames, min_frames) if pieces else [frames])
    summary = f"skipped {len(skipped)} of {plural(len(paths), 'video')}: {', '.join(skipped)}"
    if not clips:
        raise DataError(
            f"no usable video in {folder} ({summary}); add readable videos of at least "
            f"{plural(min_frames, 'frame')}"
        )
    if skipped:
        print(f"note: {summary}", file=sys.stderr)
    return clips


def first_clips(
    folder: Path, image_size: int, length: int, count: int, framing: Framing = CROP
) -> Iterator[np.ndarray]:
    """Up to `count` clips (length, image_size, image_size, 3) uint8: each video's
    non-overlapping clips from frame 0, video after video in sorted order; decoding stops once
    `count` clips are read. An unreadable video is a VideoError: test clips are not skipped."""
    given = 0
    for path in video_paths(folder):
        frames = iter_frames(path, size=image_size, framing=framing)
        with contextlib.closing(frames):
            clip: list[np.ndarray] = []
            for frame in frames:
                clip.append(frame)
                if len(clip) == length:
                    yield np.stack(clip)
                    clip, given = [], given + 1
                    if given == count:
                        return

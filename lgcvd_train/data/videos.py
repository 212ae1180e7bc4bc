"""A folder of the user's own videos as training clips (README, "Train on your own videos").

Every video file under the folder (recursively, sorted) is decoded with the runtime's reader,
center-cropped and resampled to image_size. Files that cannot be read or are too short are
skipped and summarised in one line on stderr ("note: skipped ..."); a folder that yields nothing
is a one-line DataError. This module only turns files into uint8 arrays; it knows nothing about
windows or tasks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError, VideoError, plural
from lgcvd_runtime.media.video import read_frames

VIDEO_SUFFIXES = (
    ".avi", ".flv", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ogv", ".webm",
    ".wmv",
)  # fmt: skip


def _problem(err: VideoError, path: Path) -> str:
    """The short problem in a reader error: "{path} <problem>; <fix>" -> "<problem>"."""
    return str(err).removeprefix(f"{path} ").split(";")[0]


def load_video_folder(folder: Path, image_size: int, min_frames: int) -> list[np.ndarray]:
    """Decode every video under `folder` -> list of (T_i, image_size, image_size, 3) uint8.

    Videos with fewer than `min_frames` frames, or that cannot be decoded, are skipped with one
    note on stderr listing them. Raises DataError if the folder is missing or holds nothing usable.
    """
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
    clips: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            frames = read_frames(path, size=image_size)  # (T, S, S, 3)
        except VideoError as err:
            skipped.append(f"{name} ({_problem(err, path)})")
            continue
        if len(frames) < min_frames:
            skipped.append(f"{name} ({plural(len(frames), 'frame')} < {min_frames})")
            continue
        clips.append(frames)
    summary = f"skipped {len(skipped)} of {plural(len(paths), 'video')}: {', '.join(skipped)}"
    if not clips:
        raise DataError(
            f"no usable video in {folder} ({summary}); add readable videos of at least "
            f"{plural(min_frames, 'frame')}"
        )
    if skipped:
        print(f"note: {summary}", file=sys.stderr)
    return clips

"""Video datasets stored as numpy arrays: resize them, and write them atomically.

The on-disk format (one uint8 N x T x H x W x 3 array in a `.npz` or `.npy` file) and its
reader are the runtime's (`lgcvd_runtime.media.arrays`). `.npy` files can be written clip by clip
(`save_video_stream`), which suits large sets such as BAIR (~16 GB). Every write goes to a
temporary file that is renamed into place.

Frames of another size go through the runtime's one resize
(`lgcvd_runtime.media.resize.fit_frame`), so training sees the pixels serving sees.
This file knows numpy only (no PyAV); nothing about models or training.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError
from lgcvd_runtime.files import refuse_existing, write_then_rename
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.arrays import ARRAY_SUFFIXES, NPZ_KEY, check_videos, command_file
from lgcvd_runtime.media.resize import CROP, fit_frame


def crop_and_resize(video: np.ndarray, size: int, framing: Framing = CROP) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3): each frame through the runtime's resize (by
    default the centre square, area average), the one serving applies to camera frames."""
    if video.shape[1:3] == (size, size) and framing.roi is None:
        return np.ascontiguousarray(video)
    return np.stack([fit_frame(frame, size, framing) for frame in video])


def save_videos(path: Path, videos: np.ndarray | list[np.ndarray], *, force: bool = False) -> None:
    """Write videos as `.npz` (compressed, key "videos") or `.npy`, atomically."""
    array = np.stack(videos) if isinstance(videos, list) else videos  # (N, T, H, W, 3)
    check_videos(array, "videos to save")
    check_output(path, force)
    with write_then_rename(path) as tmp, open(tmp, "wb") as file:
        if path.suffix == ".npz":
            np.savez_compressed(file, **{NPZ_KEY: array})
        else:
            np.save(file, array)


def invocation() -> str:
    """This process's command line as typed, e.g. `python tools/make_dataset.py pushsim ...`."""
    return "python " + shlex.join(sys.argv)


def save_video_stream(
    path: Path,
    clips: Iterable[np.ndarray],
    count: int,
    *,
    force: bool = False,
    command: str | None = None,
) -> None:
    """Write `count` clips of equal shape as they come: `.npy` streams to disk, `.npz` collects.

    Use `.npy` for sets larger than memory; either way the file appears only when complete.
    `command` (how the clips were made) goes to `command_file(path)`, for training provenance.
    """
    if path.suffix != ".npy":
        save_videos(path, list(clips), force=force)
    else:
        _stream_npy(path, clips, count, force)
    if command is not None:
        with write_then_rename(command_file(path)) as tmp:
            tmp.write_text(json.dumps({"command": command}, indent=2) + "\n")


def _stream_npy(path: Path, clips: Iterable[np.ndarray], count: int, force: bool) -> None:
    check_output(path, force)
    written = 0
    with write_then_rename(path) as tmp:
        array = None
        for clip in clips:  # (T, H, W, 3) uint8
            if array is None:
                check_videos(clip[None], "the first clip")
                array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (count, *clip.shape))
            array[written] = clip
            written += 1
        if written != count or array is None:
            raise DataError(
                f"expected {count} clips for {path} but got {written}; nothing was written"
            )
        array.flush()
        del array


def check_output(path: Path, force: bool) -> None:
    """Raise unless `path` is a .npz/.npy name that may be written (new, or --force)."""
    if path.suffix not in ARRAY_SUFFIXES:
        raise DataError(f"output {path} must end in .npz or .npy; rename it")
    refuse_existing(path, force)

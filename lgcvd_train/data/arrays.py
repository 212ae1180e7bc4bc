"""Video datasets stored as numpy arrays: load and check, resize, and write them atomically.

The on-disk format is one uint8 array of shape N x T x H x W x 3 (N videos of T RGB frames),
either a `.npz` file (key "videos", or its only array) or a `.npy` file. `.npy` files are
memory-mapped when read and can be written clip by clip (`save_video_stream`), which suits
large sets such as BAIR (~16 GB). Every write goes to a temporary file that is renamed into place.

Frames of another size go through the runtime's one resize (`lgcvd_runtime.media.video.center_crop_resize`),
so training sees the pixels serving sees. This file knows numpy only; nothing about models or
training.
"""

from __future__ import annotations

import json
import shlex
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError
from lgcvd_runtime.files import refuse_existing, write_then_rename
from lgcvd_runtime.media.video import center_crop_resize

ARRAY_SUFFIXES = (".npy", ".npz")
NPZ_KEY = "videos"
EXPECTED = "a uint8 array of shape N×T×H×W×3"


def load_videos(path: Path) -> np.ndarray:
    """Read and check a video array, (N, T, H, W, 3) uint8; `.npy` files are memory-mapped."""
    try:
        if path.suffix == ".npy":
            videos = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                videos = archive[_npz_key(path, archive.files)]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"cannot read {path} as a numpy array ({error}); write it with numpy.save/savez"
        ) from None
    check_videos(videos, str(path))
    return videos


def _npz_key(path: Path, keys: list[str]) -> str:
    """The array to use in an .npz: the one named "videos", else the only one."""
    if NPZ_KEY in keys or len(keys) == 1:
        return NPZ_KEY if NPZ_KEY in keys else keys[0]
    found = ", ".join(keys) if keys else "none"
    raise DataError(
        f"{path} holds arrays [{found}], not one named '{NPZ_KEY}'; "
        f"save the videos with numpy.savez(path, {NPZ_KEY}=array)"
    )


def check_videos(videos: np.ndarray, name: str) -> None:
    """Raise DataError unless `videos` is a non-empty uint8 (N, T, H, W, 3) array."""
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        shape = "×".join(str(n) for n in videos.shape)
        raise DataError(
            f"{name}: expected {EXPECTED}, found {videos.dtype} of shape {shape}; "
            "convert it to that layout and dtype and save it again"
        )
    if videos.shape[0] == 0:
        raise DataError(f"{name} holds no videos (N=0); save at least one video in it")


def crop_and_resize(video: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3): each frame through the runtime's resize (centre
    square, area average), the one serving applies to camera frames."""
    if video.shape[1:3] == (size, size):
        return np.ascontiguousarray(video)
    return np.stack([center_crop_resize(frame, size) for frame in video])


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


def command_file(path: Path) -> Path:
    """The JSON file beside a video array that records the command which wrote it."""
    return path.with_name(path.name + ".json")


def invocation() -> str:
    """This process's command line as typed, e.g. `python tools/make_dataset.py pushsim ...`."""
    return "python " + shlex.join(sys.argv)


def recorded_command(path: Path) -> str | None:
    """The command recorded beside a video array by the dataset tools, if any."""
    try:
        return json.loads(command_file(path).read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


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

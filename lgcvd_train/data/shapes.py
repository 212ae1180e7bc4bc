"""Moving shapes: a few coloured squares and discs bouncing on a dark background, in numpy.

The fastest data source (thousands of frames per second): used by tests and the quick training
example. Each shape moves at constant velocity and reflects off the frame borders.

Clip i is a function of (seed, i) alone, so datasets made in chunks (`first_index`) match one
call. This file knows numpy only.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 20  # dark grey, 0-255
SHAPES_PER_CLIP = (2, 4)  # inclusive range of shapes in one clip


def generate(
    num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
) -> np.ndarray:
    """Clips first_index .. first_index+num_videos-1 as uint8 (N, T, H, W, 3)."""
    videos = np.empty((num_videos, frames, image_size, image_size, 3), np.uint8)
    for i in range(num_videos):
        videos[i] = _clip(np.random.default_rng([seed, first_index + i]), frames, image_size)
    return videos


def _clip(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """One clip of bouncing shapes, (T, H, W, 3) uint8; later shapes are drawn on top."""
    video = np.full((frames, size, size, 3), BACKGROUND, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)  # (H, W) pixel centres
    t = np.arange(frames, dtype=np.float32)[:, None, None]  # (T, 1, 1)
    for _ in range(rng.integers(SHAPES_PER_CLIP[0], SHAPES_PER_CLIP[1] + 1)):
        radius = rng.uniform(0.08, 0.16) * size
        span = size - 2.0 * radius  # the centre moves in [radius, size - radius]
        start = rng.uniform(0.0, span, 2)
        velocity = rng.uniform(0.02, 0.06, 2) * size * rng.choice([-1.0, 1.0], 2)
        cy = radius + bounce(start[0] + velocity[0] * t, span)  # (T, 1, 1)
        cx = radius + bounce(start[1] + velocity[1] * t, span)
        if rng.uniform() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2  # disc, (T, H, W)
        else:
            inside = np.maximum(np.abs(yy - cy), np.abs(xx - cx)) <= radius  # square
        video[inside] = rng.integers(90, 256, 3, dtype=np.uint8)
    return video


def bounce(position: np.ndarray, span: float) -> np.ndarray:
    """Fold an unbounded 1-D position into [0, span] as a reflecting wall does (triangle wave)."""
    return span - np.abs(np.mod(position, 2.0 * span) - span)

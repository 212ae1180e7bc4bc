"""The one resize: center-crop a frame to a square and area-resample it to the model's size.

Camera frames (`api.Model.fit`), decoded videos (`video.read_frames(size=...)`) and training
arrays (`lgcvd_train.data.arrays`) all go through `center_crop_resize`, so training sees the
pixels serving sees. Pure numpy: this module knows no video container, so the training side
imports it without PyAV.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix: output pixel i averages source pixels by their overlap with its span."""
    edges = np.arange(dst + 1) * (src / dst)  # output pixel i spans [edges[i], edges[i+1])
    lo = np.maximum(edges[:-1, None], np.arange(src)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, src + 1)[None, :])
    weights = np.clip(hi - lo, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def center_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): crop the centre square, then area-resample it."""
    h, w, _ = frame.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top : top + side, left : left + side]  # (side, side, 3)
    if side == size:
        return np.ascontiguousarray(square)
    weights = _area_weights(side, size)  # (size, side)
    rows = weights @ square.reshape(side, side * 3).astype(np.float32)  # (size, side * 3)
    out = weights @ rows.reshape(size, side, 3)  # per output row: (size, side) @ (side, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

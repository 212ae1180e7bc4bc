"""Frame normalisation, the window layout and the local condition (paper §3.2).

A window ("fragment") of N frames is stacked on channels: (B, 3N, H, W), frame f in channels
[3f, 3f+3), values in [-1, 1]. The local condition y m has K slots; slot k holds one RGB frame and
one constant mask plane whose value (j+1)/(N+1) encodes the frame's position j in the window
(j = -1: no frame; its image is the fixed tensor U, mid-gray = 0). Layout (B, 4K, H, W):
[img_0 (3), mask_0 (1), img_1 (3), mask_1 (1), ...].

A residual model (`ModelSpec.residual`) denoises the window minus its `baseline`, the guess the
condition frames give each frame on their own (a copy, or a cross-fade between two); its sample
plus the baseline is the window.

Pure numpy (float32). Training calls these functions on numpy arrays and converts the result;
this module knows nothing about networks or engines.
"""

from __future__ import annotations

import numpy as np

ABSENT = -1  # position of an empty condition slot


def to_model(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., T, H, W, 3) -> float32 (..., T, 3, H, W) in [-1, 1]."""
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    x = np.moveaxis(frames, -1, -3).astype(np.float32)
    return x / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float (..., T, 3, H, W) in [-1, 1] -> uint8 (..., T, H, W, 3), rounded and clipped."""
    y = np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5, 0, 255)
    return np.moveaxis(np.rint(y).astype(np.uint8), -3, -1)


def stack_window(frames: np.ndarray) -> np.ndarray:
    """(B, N, 3, H, W) -> (B, 3N, H, W)."""
    b, n, c, h, w = frames.shape
    return frames.reshape(b, n * c, h, w)


def unstack_window(x: np.ndarray, channels: int = 3) -> np.ndarray:
    """(B, 3N, H, W) -> (B, N, 3, H, W)."""
    b, nc, h, w = x.shape
    return x.reshape(b, nc // channels, channels, h, w)


def mask_value(position: int, n_frames: int) -> float:
    """Mask plane value (j + 1) / (N + 1) for position j in -1..N-1."""
    if not ABSENT <= position < n_frames:
        raise ValueError(f"position {position} outside -1..{n_frames - 1}")
    return (position + 1) / (n_frames + 1)


def unknown_window(batch: int, n_frames: int, height: int, width: int) -> np.ndarray:
    """The fixed tensor U (no previous fragment): mid-gray, all zeros. (B, 3N, H, W)."""
    return np.zeros((batch, 3 * n_frames, height, width), dtype=np.float32)


def build_condition(window: np.ndarray, positions: np.ndarray, n_frames: int) -> np.ndarray:
    """Local condition y m from the frames of a window at the given positions.

    window: (B, N, 3, H, W) float in [-1, 1], frames the condition may read (others ignored);
    positions: (B, K) int, -1 = empty slot.  Returns (B, 4K, H, W) float32.
    """
    positions = np.asarray(positions, dtype=np.int64)
    b, _, c, h, w = window.shape
    k = positions.shape[1]
    cond = np.zeros((b, k, c + 1, h, w), dtype=np.float32)
    for i in range(b):
        for slot in range(k):
            j = int(positions[i, slot])
            cond[i, slot, c] = mask_value(j, n_frames)
            if j != ABSENT:
                cond[i, slot, :c] = window[i, j]
    return cond.reshape(b, k * (c + 1), h, w)


def baseline(window: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The frames a window's condition frames predict on their own: a frame between two of them
    is their linear cross-fade, a frame before the first or after the last is a copy of it, and
    every frame of a window without condition frames is U (0).

    window: (B, N, 3, H, W) float in [-1, 1], read at `positions` only; positions: (B, K) int,
    -1 = empty slot. Returns (B, N, 3, H, W) float32.
    """
    positions = np.asarray(positions, dtype=np.int64)
    out = np.zeros(window.shape, dtype=np.float32)
    for i, row in enumerate(positions):
        known = sorted({int(j) for j in row if j != ABSENT})
        for f in range(window.shape[1] if known else 0):
            before = [j for j in known if j <= f]
            after = [j for j in known if j >= f]
            if before and after and before[-1] != after[0]:
                a, b = before[-1], after[0]
                w = (f - a) / (b - a)
                out[i, f] = (1.0 - w) * window[i, a] + w * window[i, b]
            else:
                out[i, f] = window[i, before[-1] if before else after[0]]
    return out


def denoised_offset(
    window: np.ndarray, positions: np.ndarray, residual: bool
) -> np.ndarray | float:
    """What the network's x0 is measured from: the stacked `baseline` (B, 3N, H, W) for a residual
    model, 0 for one that denoises the window itself. x0 = window - offset; window = x0 + offset."""
    return stack_window(baseline(window, positions)) if residual else 0.0

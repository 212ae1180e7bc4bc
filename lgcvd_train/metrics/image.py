"""Per-frame PSNR and SSIM between two videos (paper §4.1, video-prediction protocol).

Frames are compared in [0, 1] with scikit-image (`data_range=1`, SSIM over the colour channels
with its default 7x7 uniform window), the convention the BAIR numbers in `data/bair-real/README`
were measured with. One value per frame; averaging over frames, clips and samples (and picking
the best of several samples) is the caller's choice.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lgcvd_runtime.errors import DataError


def to_unit_float(video: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float64 in [0, 1]; float input is taken as already in [0, 1]."""
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video.astype(np.float64) / 255.0
    return video.astype(np.float64)


def _paired_frames(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_unit_float(a), to_unit_float(b)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise DataError(
            f"videos to compare have shapes {a.shape} and {b.shape}; pass two (T, H, W, 3) arrays "
            "of the same shape"
        )
    return a, b


# The PSNR of identical frames, whose MSE is 0: infinite by the formula, counted as 100 dB so that
# means over frames and JSON reports stay numbers. It lies above the PSNR of any two 8-bit frames
# of up to 226 x 226 pixels that differ at all: one grey level in one channel of one pixel scores
# 20 log10(255) + 10 log10(3 H W) dB (89.0 dB at 64 x 64).
PSNR_IDENTICAL = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB per frame, 10 log10(1 / MSE) on values in [0, 1]; identical frames score
    PSNR_IDENTICAL. (T, H, W, 3) x2 -> (T,)."""
    a, b = _paired_frames(a, b)
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b, strict=True)]
    return np.minimum(np.array(values), PSNR_IDENTICAL)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per frame (colour, channel axis last). (T, H, W, 3) x2 -> (T,)."""
    a, b = _paired_frames(a, b)
    return np.array(
        [
            structural_similarity(x, y, data_range=1.0, channel_axis=-1)
            for x, y in zip(a, b, strict=True)
        ]
    )

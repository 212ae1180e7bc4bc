"""Averaging per-frame metrics over frames, samples and clips (paper §4.1): per clip the mean
over the chosen frames, then the best of the S samples (each metric picking its own sample) and
the mean over samples; mean and std (ddof 0) over clips; per-frame curves; and the paired
difference of two methods on the same clips. Arrays in, numbers out: knows no model or file.
"""

from __future__ import annotations

import numpy as np

# metric -> True if higher is better (decides the best of S samples)
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}


def best_sample(values: np.ndarray, metric: str) -> np.ndarray:
    """Per clip, the sample whose mean over frames is best. (C, S, f) -> (C,) sample index."""
    score = values.mean(axis=2)  # (C, S)
    return score.argmax(axis=1) if HIGHER_IS_BETTER[metric] else score.argmin(axis=1)


def _over_clips(per_clip: np.ndarray) -> dict[str, float]:
    return {"mean": float(per_clip.mean()), "std": float(per_clip.std())}


def aggregate(per_frame: dict[str, np.ndarray], frames: slice) -> dict:
    """Best-of-S and mean-over-samples aggregates over the predicted frames `frames`.

    Returns {"best": {metric: {"mean", "std"}}, "mean": {...}, "per_clip": {"best": {metric:
    (C,)}, "mean": {...}}}; mean and std are over clips.
    """
    best, mean = {}, {}
    for metric, values in per_frame.items():
        picked = values[:, :, frames]  # (C, S, f)
        clips = np.arange(len(picked))
        best[metric] = picked.mean(axis=2)[clips, best_sample(picked, metric)]  # (C,)
        mean[metric] = picked.mean(axis=(1, 2))  # (C,)
    return {
        "best": {m: _over_clips(v) for m, v in best.items()},
        "mean": {m: _over_clips(v) for m, v in mean.items()},
        "per_clip": {"best": best, "mean": mean},
    }


def paired_difference(per_clip: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Mean per-clip difference per_clip - base and its standard error, std(ddof 1) / sqrt(C)
    (NaN for one clip): the paired comparison of two methods on the same clips."""
    diff = np.asarray(per_clip, np.float64) - np.asarray(base, np.float64)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return float(diff.mean()), float(se)


def curves(per_frame: dict[str, np.ndarray], frames: slice) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame curves over all predicted frames, averaged over clips: "mean" (over samples)
    and "best" (each clip's best sample on `frames`, per metric). -> {"best"|"mean": metric -> (n,)}."""
    best, mean = {}, {}
    for metric, values in per_frame.items():
        pick = best_sample(values[:, :, frames], metric)  # (C,)
        best[metric] = values[np.arange(len(values)), pick].mean(axis=0)
        mean[metric] = values.mean(axis=(0, 1))
    return {"best": best, "mean": mean}

"""Fréchet Video Distance (paper §4.1; Unterthiner et al. 2018).

FVD fits a Gaussian to the I3D logits of each set of videos and returns the Fréchet distance
    d² = |mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^(1/2))
in float64, the matrix square root from scipy (its real part: round-off leaves tiny imaginary
parts). With fewer videos than feature dimensions (400) the covariances are singular; the
distance is still defined, but noisy: compare FVDs only over the same number of videos.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from lgcvd_runtime.errors import DataError

from .i3d import I3D, i3d_features

# Fewest clips an FVD should rest on: the protocol's 256 (Unterthiner et al. 2018; paper §4.1).
# Below it the estimate is biased upward and noisy, so FVDs on fewer clips compare only at equal N.
RELIABLE_CLIPS = 256
SQRT_OFFSET = 1e-6  # added to both diagonals if the square root of S_a S_b comes out non-finite


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets. (N, D), (M, D) -> float."""
    if (
        feats_a.ndim != 2
        or feats_a.shape[1] != feats_b.shape[1]
        or min(len(feats_a), len(feats_b)) < 2
    ):
        raise DataError(
            f"feature sets have shapes {feats_a.shape} and {feats_b.shape}; pass two (N, D) arrays "
            "with the same D and at least 2 rows each"
        )
    a, b = feats_a.astype(np.float64), feats_b.astype(np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # (D, D)
    cross = _sqrtm(cov_a @ cov_b)
    if not np.isfinite(cross).all():
        offset = SQRT_OFFSET * np.eye(len(cov_a))
        cross = _sqrtm((cov_a + offset) @ (cov_b + offset))
    mean_term = float(np.sum((mu_a - mu_b) ** 2))
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(cross))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    return np.real(scipy.linalg.sqrtm(m))


def fvd(model: I3D, real_videos: np.ndarray, fake_videos: np.ndarray) -> float:
    """FVD between two sets of uint8 videos (N, T, H, W, 3), T >= 9 (16 in the usual protocol)."""
    return frechet_distance(i3d_features(model, real_videos), i3d_features(model, fake_videos))


def fvd_label(model: dict) -> str:
    """'1007.3 (N=256)': a model's FVD with the number of real clips it rests on."""
    return f"{model['fvd']:.1f} (N={model['fvd_clips']['real']})"


def few_clips_warning(clips: int) -> str | None:
    """The warning for an FVD on fewer than RELIABLE_CLIPS clips, else None."""
    if clips >= RELIABLE_CLIPS:
        return None
    return (
        f"warning: FVD rests on {clips} clips, fewer than {RELIABLE_CLIPS}: it is biased upward "
        f"and noisy, so compare it only with FVDs on {clips} clips (pass --clips "
        f"{RELIABLE_CLIPS} or more for the protocol's FVD)"
    )

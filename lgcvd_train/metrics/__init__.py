"""Evaluation metrics of the video-prediction protocol (paper §4.1): per-frame PSNR / SSIM /
LPIPS, FVD on I3D features, and writing the results. Importing this package loads no weights."""

from .fvd import frechet_distance, fvd
from .i3d import I3D, i3d_features, load_i3d
from .image import PSNR_IDENTICAL, psnr, ssim
from .lpips import LPIPS, load_lpips, lpips_frames
from .report import plot_per_frame, write_report

__all__ = [
    "I3D",
    "LPIPS",
    "PSNR_IDENTICAL",
    "frechet_distance",
    "fvd",
    "i3d_features",
    "load_i3d",
    "load_lpips",
    "lpips_frames",
    "plot_per_frame",
    "psnr",
    "ssim",
    "write_report",
]

"""Loss weighting over timesteps: none, or min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion
Training via Min-SNR Weighting Strategy").

min-SNR weights the x0 error of a sample at timestep t by min(SNR_t, gamma), SNR_t = abar_t /
(1 - abar_t). The network regresses its parameterization's target, whose squared error is the x0
error times a factor of t: (SNR + 1) for v, SNR for eps. So the weight on the target's loss is
min(SNR, gamma) / (SNR + 1) for v and min(SNR, gamma) / SNR = min(1, gamma / SNR) for eps. With
the L1 loss the same weights are used (the paper derives them for L2).

The SNR comes from the runtime's schedule tables (`full_alphas_cumprod`), the ones training noises
with.

Motion weighting (an experiment of issue 18, off by default) weights each pixel of the target by
1 + strength * m, m in [0, 1] how much that pixel of the clip changes from the frame before (the
first frame: to the frame after), so that the moving arm, a few percent of the pixels, counts for
more than the still tray. Each sample's loss is then the weighted mean over its pixels.

Knows the loss and the schedule; nothing about models or the training loop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod

from .config import WEIGHTINGS
from .diffusion import loss_fn


class LossWeightingError(LgcvdError):
    """An unknown loss weighting, or a gamma that is not a positive number."""


def min_snr_weights(spec: ScheduleSpec, parameterization: str, gamma: float) -> np.ndarray:
    """(T,) float64: the min-SNR-gamma weight of the target's loss at each timestep."""
    ab = full_alphas_cumprod(spec)
    snr = ab / (1.0 - ab)
    clipped = np.minimum(snr, gamma)
    if parameterization == "v":
        return clipped / (snr + 1.0)
    if parameterization == "eps":  # min(SNR, gamma) / SNR, which is 1 wherever SNR <= gamma
        out = np.ones_like(snr)
        above = snr > gamma
        out[above] = gamma / snr[above]
        return out
    raise LossWeightingError(f"min-snr weighting: unknown parameterization {parameterization!r}")


def motion_weights(window: torch.Tensor, frames: int, strength: float) -> torch.Tensor:
    """Per-pixel loss weights of a window (B, 3N, H, W) in [-1, 1]: 1 + strength * m, m the mean
    over colour channels of |frame j - frame j-1| / 2 (frame 0: against frame 1), the same on
    each of a pixel's channels."""
    b, c, h, w = window.shape
    x = window.float().reshape(b, frames, c // frames, h, w)
    change = (x[:, 1:] - x[:, :-1]).abs().mean(2, keepdim=True) / 2  # (B, N-1, 1, H, W)
    m = torch.cat([change[:, :1], change], 1)
    return (1.0 + strength * m).expand_as(x).reshape(b, c, h, w)


class WeightedLoss:
    """loss(out, tgt, t, window): the run's loss (`TrainConfig.loss`) with its timestep and motion
    weightings. With "none" and no motion weighting it is `diffusion.loss_fn`, unchanged;
    otherwise the mean over the batch of each sample's (motion-weighted) mean loss times its
    timestep weight. `window` is the clip the target was made from (B, 3N, H, W)."""

    def __init__(
        self,
        kind: str,
        weighting: str,
        gamma: float,
        spec: ScheduleSpec,
        parameterization: str,
        device: torch.device | str = "cpu",
        motion: float = 0.0,
        frames: int = 8,
    ):
        if weighting not in WEIGHTINGS:
            raise LossWeightingError(
                f"loss weighting {weighting!r} is unknown; choose one of {', '.join(WEIGHTINGS)}"
            )
        if weighting == "min-snr" and not (np.isfinite(gamma) and gamma > 0):
            raise LossWeightingError(f"--snr-gamma {gamma}: gamma is a finite number > 0")
        if not (np.isfinite(motion) and motion >= 0):
            raise LossWeightingError(f"--motion-weight {motion}: a finite number >= 0")
        self.kind, self.motion, self.frames = kind, motion, frames
        self.weights = (
            torch.tensor(
                min_snr_weights(spec, parameterization, gamma), dtype=torch.float32, device=device
            )
            if weighting == "min-snr"
            else None
        )

    def __call__(
        self, out: torch.Tensor, tgt: torch.Tensor, t: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        if self.weights is None and not self.motion:
            return loss_fn(out, tgt, self.kind)
        if self.kind not in ("l1", "l2"):
            raise ValueError(f"unknown loss {self.kind!r}; choose l1 or l2")
        diff = F.l1_loss if self.kind == "l1" else F.mse_loss
        per_pixel = diff(out.float(), tgt, reduction="none")
        if self.motion:
            w = motion_weights(window, self.frames, self.motion)
            per_sample = (per_pixel * w).flatten(1).sum(1) / w.flatten(1).sum(1)
        else:
            per_sample = per_pixel.flatten(1).mean(1)
        return per_sample.mean() if self.weights is None else (per_sample * self.weights[t]).mean()

"""Loss weighting over timesteps: none, or min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion
Training via Min-SNR Weighting Strategy").

min-SNR weights the x0 error of a sample at timestep t by min(SNR_t, gamma), SNR_t = abar_t /
(1 - abar_t). The network regresses its parameterization's target, whose squared error is the x0
error times a factor of t: (SNR + 1) for v, SNR for eps. So the weight on the target's loss is
min(SNR, gamma) / (SNR + 1) for v and min(SNR, gamma) / SNR = min(1, gamma / SNR) for eps. With
the L1 loss the same weights are used (the paper derives them for L2).

The SNR comes from the runtime's schedule tables (`full_alphas_cumprod`), the ones training noises
with. Knows the loss and the schedule; nothing about models or the training loop.
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


class WeightedLoss:
    """loss(out, tgt, t): the run's loss (`TrainConfig.loss`) with its timestep weighting. With
    "none" it is `diffusion.loss_fn`, unchanged; with "min-snr" the mean over the batch of each
    sample's mean loss times its weight."""

    def __init__(
        self,
        kind: str,
        weighting: str,
        gamma: float,
        spec: ScheduleSpec,
        parameterization: str,
        device: torch.device | str = "cpu",
    ):
        if weighting not in WEIGHTINGS:
            raise LossWeightingError(
                f"loss weighting {weighting!r} is unknown; choose one of {', '.join(WEIGHTINGS)}"
            )
        if weighting == "min-snr" and not (np.isfinite(gamma) and gamma > 0):
            raise LossWeightingError(f"--snr-gamma {gamma}: gamma is a finite number > 0")
        self.kind = kind
        self.weights = (
            torch.tensor(
                min_snr_weights(spec, parameterization, gamma), dtype=torch.float32, device=device
            )
            if weighting == "min-snr"
            else None
        )

    def __call__(self, out: torch.Tensor, tgt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return loss_fn(out, tgt, self.kind)
        if self.kind not in ("l1", "l2"):
            raise ValueError(f"unknown loss {self.kind!r}; choose l1 or l2")
        diff = F.l1_loss if self.kind == "l1" else F.mse_loss
        per_sample = diff(out.float(), tgt, reduction="none").flatten(1).mean(1)
        return (per_sample * self.weights[t]).mean()

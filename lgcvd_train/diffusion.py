"""The diffusion loss on the torch side (paper Eq. 3, 8, 9), reading the runtime's schedule tables.

The schedule is built once, in numpy float64, by `lgcvd_runtime.schedule`; this module only turns
it into per-sample coefficient tensors. The arithmetic (q_sample, targets, x0 estimates) is the
runtime's own `samplers` code applied to tensors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lgcvd_runtime.samplers import q_sample, v_target, x0_eps_from_output
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod


class Schedule:
    """alpha_t = sqrt(abar_t) and sigma_t = sqrt(1 - abar_t) as float32 tensors, T entries, of the
    schedule `spec` (a run's is `TrainConfig.schedule`)."""

    def __init__(self, spec: ScheduleSpec, device: torch.device | str = "cpu"):
        ab = full_alphas_cumprod(spec)
        self.T = spec.T
        self.alpha = torch.tensor(np.sqrt(ab), dtype=torch.float32, device=device)
        self.sigma = torch.tensor(np.sqrt(1.0 - ab), dtype=torch.float32, device=device)

    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) int timesteps -> alpha, sigma shaped (B, 1, 1, 1) for broadcasting."""
        return self.alpha[t].view(-1, 1, 1, 1), self.sigma[t].view(-1, 1, 1, 1)


def noisy_input(sched: Schedule, x0, t, eps):
    """Eq. 3 and the regression target of the parameterization."""
    alpha, sigma = sched.coefficients(t)
    return q_sample(x0, eps, alpha, sigma), (alpha, sigma)


def target(x0, eps, alpha, sigma, parameterization: str) -> torch.Tensor:
    if parameterization == "v":
        return v_target(x0, eps, alpha, sigma)
    if parameterization == "eps":
        return eps
    raise ValueError(f"unknown parameterization {parameterization!r}")


def loss_fn(pred: torch.Tensor, tgt: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over all frames, channels and pixels; L1 as the reference, L2 as Eq. 8-9."""
    if kind == "l1":
        return F.l1_loss(pred.float(), tgt)
    if kind == "l2":
        return F.mse_loss(pred.float(), tgt)
    raise ValueError(f"unknown loss {kind!r}; choose l1 or l2")


def estimate_x0(x_t, out, alpha, sigma, parameterization: str, offset=0.0) -> torch.Tensor:
    """Eq. 7: the one-step estimate x̂0 of the window from the same noisy step, plus `offset` (a
    residual model's baseline), clipped to [-1, 1]."""
    x0, _ = x0_eps_from_output(x_t, out.float(), alpha, sigma, parameterization)
    return (x0 + offset).clamp(-1.0, 1.0)

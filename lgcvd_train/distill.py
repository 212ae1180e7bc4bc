"""Progressive distillation: one student DDIM step does what two teacher DDIM steps do
(Salimans & Ho, ICLR 2022, Algorithm 2), on LGC-VD's two-stage windows (paper §3.3).

The grid is nested and trailing: S steps at t_k = round(T k / S) - 1, k = 1..S (numpy's round,
half to even: T = 1000, S = 16 gives 61, 124, ..., 999). Because T k / S = T 2k / (2S), the grid
of S steps is every second point of the grid of 2S, so each round (16 -> 8 -> 4 -> 2 -> 1) reuses
it. A step from t_k goes to t_{k-1}; from t_1 it goes to the clean end (abar = 1), which is where
the runtime's sampler ends (`samplers.sample` returns x̂0 at the smallest t).

Notation (code name -> Salimans & Ho, Algorithm 2), per sample, as (B, 1, 1, 1) tensors:
  z, (a, s)        z_t on the student's grid, alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t)
  (a1, s1)         t'  = the teacher's midpoint, t_{2k-1} of the grid of 2S
  (a2, s2)         t'' = t_{k-1} of the student's grid (alpha = 1, sigma = 0 at the clean end)
  x_tilde          x̃ = (z'' - (s2 / s) z) / (a2 - (s2 / s) a): the x̂0 whose one DDIM step from
                   z reaches the teacher's z''
  v_tilde          the v that gives x_tilde: x̂0 = a z - s v  =>  v = (a z - x̂0) / s
The loss is w(lambda) |x̃ - x̂0|^2 = w s^2 |ṽ - v̂|^2: "snr+1" (w = SNR + 1) is plain MSE on v,
"truncated-snr" (w = max(SNR, 1)) weighs it by max(a^2, s^2).

Teacher steps are the runtime's DDIM arithmetic (`samplers.x0_eps_from_output`, x̂0 clipped to
the frame range and eps re-derived, as `samplers.sample` does); the coefficients are per-sample
tensors here, so the step itself is written out. Batches, tasks, conditions and noise come from
`two_stage.TwoStageStep.prepare` (the training task mixture), timesteps from this module's own
seeds. Knows the model's call signature and the two-stage batch; nothing about files or rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lgcvd_runtime.samplers import q_sample, x0_eps_from_output
from lgcvd_runtime.schedule import ScheduleSpec, spaced_timesteps

from .config import ModelConfig, TrainConfig
from .diffusion import Schedule, estimate_x0
from .two_stage import Batch, TwoStageStep

WEIGHTINGS = ("snr+1", "truncated-snr")  # distill_cli lists them too (without torch)
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z, t) -> v


def trailing_grid(T: int, steps: int) -> np.ndarray:
    """(steps,) int64, ascending: the schedule's trailing grid, t_k = round(T k / steps) - 1,
    k = 1..steps (`schedule.spaced_timesteps`: the one home of the rule); nested for halvings."""
    grid = spaced_timesteps(ScheduleSpec(T=T), steps, "trailing")
    assert grid[0] >= 0 and grid[-1] == T - 1 and np.all(np.diff(grid) > 0)
    return grid


def ddim_coefficients(
    sched: Schedule, grid: np.ndarray, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) of grid point k (B,) (k = 0: the clean end, alpha 1, sigma 0)."""
    padded = torch.cat([sched.alpha.new_ones(1), sched.alpha[torch.from_numpy(grid)]])
    sig = torch.cat([sched.sigma.new_zeros(1), sched.sigma[torch.from_numpy(grid)]])
    idx = k.to(padded.device)
    return padded[idx].view(-1, 1, 1, 1), sig[idx].view(-1, 1, 1, 1)


def teacher_step(denoise: Denoise, z, t, a, s, a_next, s_next, clip):
    """One deterministic DDIM step of the teacher from z at (a, s) to (a_next, s_next); returns
    (z_next, x̂0). `clip` = (low, high) bounds of x̂0, or None."""
    x0, eps = x0_eps_from_output(z, denoise(z, t), a, s, "v")
    if clip is not None:
        x0 = x0.clamp(*clip)
        eps = (z - a * x0) / s
    return a_next * x0 + s_next * eps, x0


def one_step_v(z, z_end, a, s, a_end, s_end):
    """The v whose one DDIM step from z at (a, s) lands on z_end at (a_end, s_end): (x̃, ṽ)."""
    ratio = s_end / s
    x_tilde = (z_end - ratio * z) / (a_end - ratio * a)
    return x_tilde, (a * z - x_tilde) / s


def loss_weight(a: torch.Tensor, s: torch.Tensor, weighting: str) -> torch.Tensor | float:
    """Per-sample factor on |ṽ - v̂|^2 that makes the loss w(lambda) |x̃ - x̂0|^2."""
    if weighting == "snr+1":
        return 1.0
    if weighting == "truncated-snr":
        return torch.maximum(a * a, s * s)
    raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")


@dataclass(frozen=True)
class Target:
    v: torch.Tensor  # ṽ (B, 3N, H, W)
    x0: torch.Tensor  # x̃
    teacher_x0: torch.Tensor  # the teacher's x̂0 at z (its first call)


def two_step_target(teacher: Denoise, z, t, t_mid, coeffs, clip) -> Target:
    """ṽ for the student at (z, t) from the teacher's two DDIM steps t -> t_mid -> end; `coeffs`
    = (a, s, a_mid, s_mid, a_end, s_end). `clip` bounds the teacher's x̂0 at both steps, as the
    runtime's sampler does; x̃ itself is not clipped (the student's sampler will clip it)."""
    a, s, a1, s1, a2, s2 = coeffs
    z_mid, x0_first = teacher_step(teacher, z, t, a, s, a1, s1, clip)
    z_end, _ = teacher_step(teacher, z_mid, t_mid, a1, s1, a2, s2, clip)
    x_tilde, v_tilde = one_step_v(z, z_end, a, s, a2, s2)
    return Target(v=v_tilde, x0=x_tilde, teacher_x0=x0_first)


class DistillStep:
    """Two-stage distillation loss of one batch for a student on the grid of `steps` whose
    teacher runs the grid of 2 * steps (one backward per stage, as `TwoStageStep`)."""

    def __init__(
        self,
        mcfg: ModelConfig,
        tcfg: TrainConfig,
        steps: int,
        weighting: str,
        device: torch.device,
    ):
        self.two = TwoStageStep(mcfg, tcfg, device)
        self.sched, self.steps, self.weighting = self.two.sched, steps, weighting
        self.grid = trailing_grid(self.sched.T, 2 * steps)  # the teacher's; the student's: [1::2]
        self.seed = tcfg.seed

    def draw(self, b: int, step: int, rank: int) -> tuple[torch.Tensor, ...]:
        """Student grid indices k in 1..S of the two stages, from (seed, S, step, rank)."""
        rng = np.random.default_rng([self.seed, self.steps, step, rank, 1 << 21])
        return tuple(torch.from_numpy(rng.integers(1, self.steps + 1, size=b)) for _ in (1, 2))

    def window(self, student, teacher, x, base, cond, prev, k, eps):
        """(loss, student output, z, a, s) of one window at student grid index k (B,)."""
        a, s = ddim_coefficients(self.sched, self.grid, 2 * k)
        a1, s1 = ddim_coefficients(self.sched, self.grid, 2 * k - 1)
        a2, s2 = ddim_coefficients(self.sched, self.grid, 2 * k - 2)
        dev = x.device
        t = torch.from_numpy(self.grid[(2 * k - 1).numpy()]).to(dev)
        t_mid = torch.from_numpy(self.grid[(2 * k - 2).numpy()]).to(dev)
        z = q_sample(x - base, eps, a, s)
        clip = (-1.0 - base, 1.0 - base)  # the window's frames stay in [-1, 1]
        with torch.no_grad():
            tgt = two_step_target(
                lambda zz, tt: teacher(zz, tt, cond, prev).float(),
                z, t, t_mid, (a, s, a1, s1, a2, s2), clip,
            )  # fmt: skip
        with self.two.autocast():
            out = student(z, t, cond, prev)
        err = (out.float() - tgt.v) ** 2
        return (loss_weight(a, s, self.weighting) * err).mean(), out, z, a, s

    def run(self, student, teacher, batch: Batch, step: int, rank: int = 0) -> dict:
        """Backpropagates both stages; returns the losses."""
        k1, k2 = self.draw(len(batch.tasks), step, rank)
        eps1, eps2 = batch.draws[0][1], batch.draws[1][1]
        loss1, out1, z1, a, s = self.window(
            student, teacher, batch.x1, batch.base1, batch.cond1, batch.prev1, k1, eps1
        )
        (0.5 * loss1).backward()
        x0_hat = estimate_x0(z1, out1.detach(), a, s, "v", offset=batch.base1)
        prev2, cond2, base2 = self.two.second_window(batch, x0_hat)
        loss2, _, _, _, _ = self.window(student, teacher, batch.x2, base2, cond2, prev2, k2, eps2)
        (0.5 * loss2).backward()
        return {
            "loss": 0.5 * (loss1.item() + loss2.item()),
            "loss1": loss1.item(),
            "loss2": loss2.item(),
        }

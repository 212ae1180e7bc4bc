"""Noise schedule and timestep respacing (paper §3.1, Eq. 1-3).

All tables are numpy float64, built once, checked by asserts. Training converts them to tensors
through `lgcvd_train.diffusion`; nothing else re-derives them. This module knows nothing about
networks, frames or engines.

Notation: beta_t (`betas`), alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s (`alphas_cumprod`).
Index t runs over 0..T-1; the network always receives the index in this original grid.
A schedule used by a shipped bundle is never changed, only added to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

SCHEDULES = ("cosine",)


@dataclass(frozen=True)
class ScheduleSpec:
    """What a bundle manifest records about the schedule."""

    type: str = "cosine"
    T: int = 1000
    s: float = 0.008  # cosine offset (Nichol & Dhariwal 2021)
    max_beta: float = 0.9999  # clip of the reference code (docs/design.md)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScheduleSpec:
        return cls(**d)


def cosine_alpha_bar(u: np.ndarray, s: float) -> np.ndarray:
    """f(u)/f(0) with f(u) = cos^2((u + s)/(1 + s) * pi/2), u = t/T in [0, 1]."""
    f = np.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def make_betas(spec: ScheduleSpec) -> np.ndarray:
    """beta_t = min(1 - abar((t+1)/T) / abar(t/T), max_beta), t = 0..T-1. (T,) float64."""
    if spec.type not in SCHEDULES:
        raise ValueError(f"unknown schedule {spec.type!r}; known: {', '.join(SCHEDULES)}")
    u = np.arange(spec.T + 1, dtype=np.float64) / spec.T
    ab = cosine_alpha_bar(u, spec.s)
    betas = np.minimum(1.0 - ab[1:] / ab[:-1], spec.max_beta)
    assert betas.shape == (spec.T,) and np.all(betas > 0) and np.all(betas <= spec.max_beta)
    return betas


@dataclass(frozen=True)
class Plan:
    """A sampling plan: the kept timesteps and the re-derived schedule over them.

    `timesteps[i]` is the original index the network sees at step i (ascending);
    `alphas_cumprod[i]` = abar at that index; `betas[i]` = 1 - abar_i / abar_{i-1} (abar_{-1} = 1).
    """

    timesteps: np.ndarray  # (S,) int64, ascending, in 0..T-1
    alphas_cumprod: np.ndarray  # (S,) float64
    betas: np.ndarray  # (S,) float64

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def describe(self) -> str:
        t = self.timesteps
        head = ", ".join(str(int(x)) for x in t[:4])
        tail = ", ".join(str(int(x)) for x in t[-3:])
        return f"{self.steps} steps over t = {head}, ..., {tail}"


def full_alphas_cumprod(spec: ScheduleSpec) -> np.ndarray:
    ab = np.cumprod(1.0 - make_betas(spec))
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1
    return ab


def respace(spec: ScheduleSpec, steps: int) -> Plan:
    """Keep `steps` evenly spaced indices round(k (T-1)/(steps-1)), k = 0..steps-1 (includes 0 and
    T-1, as the reference's `space_timesteps(1000, "100")`), and re-derive betas from the kept abar.
    """
    if not 1 <= steps <= spec.T:
        raise ValueError(f"steps must be in 1..{spec.T}, got {steps}")
    if steps == 1:
        return plan_at(spec, [spec.T - 1])
    return plan_at(spec, np.unique(np.round(np.linspace(0, spec.T - 1, steps)).astype(np.int64)))


SPACINGS = ("even", "trailing", "log-snr")
LOG_SNR_FLOOR = -5.1  # noisy end of the log-SNR grid (diffusers' lambda_min_clipped for cosine)


def log_snr(ab: np.ndarray) -> np.ndarray:
    """lambda = log(alpha / sigma) = log(abar / (1 - abar)) / 2."""
    return 0.5 * np.log(ab / (1.0 - ab))


def spaced_timesteps(spec: ScheduleSpec, steps: int, spacing: str) -> np.ndarray:
    """The (steps,) ascending original indices of a grid; pass them to `plan_at`.

    even: respace's, from t = 0 to T-1. trailing: t_k = round(T k / steps) - 1, k = 1..steps
    (round half to even, as numpy; nested for powers of two; ends at t = T/steps - 1, above 0).
    log-snr: steps + 1 values of lambda uniform from max(lambda(T-1), LOG_SNR_FLOOR) up to
    lambda(0), the one at t = 0 dropped (as trailing drops it), each at the t of nearest lambda.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    if not 1 <= steps <= spec.T:
        raise ValueError(f"steps must be in 1..{spec.T}, got {steps}")
    if spacing == "even":
        return respace(spec, steps).timesteps
    if spacing == "trailing":
        return np.round(spec.T * np.arange(1, steps + 1) / steps).astype(np.int64) - 1
    lam = log_snr(full_alphas_cumprod(spec))  # decreasing in t
    targets = np.linspace(max(lam[-1], LOG_SNR_FLOOR), lam[0], steps + 1)[:-1]
    kept = np.unique(np.abs(lam[None, :] - targets[:, None]).argmin(axis=1))
    if len(kept) < steps:
        raise ValueError(f"{steps} steps uniform in log-SNR put two on one timestep; use fewer")
    return kept


def plan_at(spec: ScheduleSpec, timesteps) -> Plan:
    """The plan over the given original indices (strictly ascending, in 0..T-1), betas re-derived
    from the kept abar: how a bundle's recorded timesteps, or a distillation grid, become a plan."""
    kept = np.asarray(timesteps, dtype=np.int64)
    if kept.ndim != 1 or len(kept) == 0 or kept[0] < 0 or kept[-1] >= spec.T:
        raise ValueError(f"timesteps must be a non-empty list in 0..{spec.T - 1}, got {timesteps}")
    if np.any(np.diff(kept) <= 0):
        raise ValueError(f"timesteps must be strictly ascending, got {timesteps}")
    ab = full_alphas_cumprod(spec)[kept]
    prev = np.concatenate([[1.0], ab[:-1]])
    betas = 1.0 - ab / prev
    assert np.all(betas > 0) and np.all(betas < 1)
    return Plan(timesteps=kept, alphas_cumprod=ab, betas=betas)

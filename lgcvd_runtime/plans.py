"""Sampler plans: which reverse-diffusion sampler runs and with how many denoising steps per
window. The one home of the defaults every command line, the library and the tools read.

    DEFAULT_PLAN  ddpm, 50 steps: matched the paper's 100-step ddpm
    FAST_PLAN     dpmpp, 10 steps: over 4x faster, the same per-frame quality, a worse FVD

Both were chosen by measurement (docs/results.md, sampler study). Where a run's plan comes from,
first match wins: an option given explicitly, then the plan its bundle records (not yet
written by lgcvd-export), then DEFAULT_PLAN. Knows sampler names only; nothing about schedules
(`schedule.respace` turns a step count into timesteps) or models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerPlan:
    sampler: str  # a name of `samplers.SAMPLERS`
    steps: int  # denoising steps per window, 1..the schedule's T


DEFAULT_PLAN = SamplerPlan("ddpm", 50)
FAST_PLAN = SamplerPlan("dpmpp", 10)

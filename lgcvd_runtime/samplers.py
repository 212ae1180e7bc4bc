"""Parameterization conversions and reverse-diffusion samplers (paper §3.1, Eq. 3, 6, 7).

Every function here is pure arithmetic on arrays: coefficients are Python floats (or, in
training, broadcastable tensors), noise is passed in, and only + - * / and clipping are used, so
the same code runs on numpy arrays (runtime) and torch tensors (training). Output dtype equals
input dtype. This module knows nothing about networks, frames, windows or engines: the loop
takes a callable `denoise(x_t, t) -> model output`.

Notation (code name -> paper symbol):
  alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t)      (Eq. 3: x_t = alpha x0 + sigma eps)
  v = alpha eps - sigma x0                            (v-prediction, Salimans & Ho 2022)
  x0 = alpha x_t - sigma v ; eps = sigma x_t + alpha v (Eq. 7 rewritten for v)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lgcvd_runtime.schedule import Plan

PARAMETERIZATIONS = ("v", "eps")
SAMPLERS = ("ddpm", "ddim", "dpmpp", "dpmpp-sde")
STOCHASTIC = ("ddpm", "dpmpp-sde")  # the samplers that draw fresh noise on every step but the last

Array = Any  # numpy.ndarray or torch.Tensor: only arithmetic and .clip are used


def q_sample(x0: Array, eps: Array, alpha, sigma) -> Array:
    """Eq. 3: x_t = alpha x0 + sigma eps."""
    return alpha * x0 + sigma * eps


def v_target(x0: Array, eps: Array, alpha, sigma) -> Array:
    return alpha * eps - sigma * x0


def x0_eps_from_output(x_t: Array, out: Array, alpha, sigma, parameterization: str):
    """Model output (v or eps) -> (x0_hat, eps_hat)."""
    if parameterization == "v":
        return alpha * x_t - sigma * out, sigma * x_t + alpha * out
    if parameterization == "eps":
        return (x_t - sigma * out) / alpha, out
    raise ValueError(f"unknown parameterization {parameterization!r}")


def ddpm_step(x_t: Array, x0: Array, ab: float, ab_prev: float, beta: float, noise) -> Array:
    """Ancestral step from the posterior q(x_{t-1} | x_t, x0) of Eq. 6 with x0 := x0_hat.
    It is also DDIM with eta = 1 (Song et al. 2021: sigma^2 = beta tilde, eps re-solved from x0),
    and first-order SDE-DPM-Solver++ (Lu et al. 2022), so neither is a separate sampler here.

    mean = sqrt(abar_prev) beta / (1 - abar) * x0 + sqrt(1 - beta) (1 - abar_prev) / (1 - abar) * x_t
    var  = beta (1 - abar_prev) / (1 - abar)   (beta tilde); no noise on the last step.
    """
    c0 = math.sqrt(ab_prev) * beta / (1.0 - ab)
    ct = math.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)
    mean = c0 * x0 + ct * x_t
    if noise is None:
        return mean
    return mean + math.sqrt(beta * (1.0 - ab_prev) / (1.0 - ab)) * noise


def ddim_step(x0: Array, eps: Array, ab_prev: float) -> Array:
    """Deterministic DDIM (eta = 0): x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps."""
    return math.sqrt(ab_prev) * x0 + math.sqrt(1.0 - ab_prev) * eps


def dpmpp_2m_parts(x0: Array, x0_prev, ab: float, ab_prev: float, h_prev):
    """What both DPM-Solver++(2M) steps share, in data prediction (Lu et al. 2022, Alg. 2).

    lambda = log(alpha / sigma); h = lambda_prev - lambda_cur. With the previous step's x0 and
    step size h_prev, D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev, r = h_prev / h; D = x0 otherwise.
    Returns (sigma_prev / sigma, alpha_prev, sigma_prev, h, D).
    """
    a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
    a_p, s_p = math.sqrt(ab_prev), math.sqrt(1.0 - ab_prev)
    h = math.log(a_p / s_p) - math.log(a / s)
    d = x0
    if x0_prev is not None:
        r = h_prev / h
        d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
    return s_p / s, a_p, s_p, h, d


def dpmpp_2m_step(x_t: Array, x0: Array, x0_prev, ab: float, ab_prev: float, h_prev):
    """DPM-Solver++(2M) step: x_prev = (s_p / s) x_t - a_p (e^-h - 1) D, h and D as in
    `dpmpp_2m_parts` (first order without a previous x0). Returns (x_prev, h).
    """
    ratio, a_p, _, h, d = dpmpp_2m_parts(x0, x0_prev, ab, ab_prev, h_prev)
    return ratio * x_t - a_p * math.expm1(-h) * d, h


def dpmpp_2m_sde_step(x_t: Array, x0: Array, x0_prev, ab: float, ab_prev: float, h_prev, noise):
    """SDE-DPM-Solver++(2M), eta = 1 (Lu et al. 2022, the reverse SDE in data prediction):

    x_prev = (s_p / s) e^-h x_t + a_p (1 - e^-2h) D + s_p sqrt(1 - e^-2h) noise, h and D as in
    `dpmpp_2m_parts` (D = x0 without a previous x0, which makes the step `ddpm_step`).
    Returns (x_prev, h).
    """
    ratio, a_p, s_p, h, d = dpmpp_2m_parts(x0, x0_prev, ab, ab_prev, h_prev)
    decay = -math.expm1(-2.0 * h)  # 1 - e^-2h
    return ratio * math.exp(-h) * x_t + a_p * decay * d + s_p * math.sqrt(decay) * noise, h


def sample(
    denoise: Callable[[Array, int], Array],
    x_T: Array,
    plan: Plan,
    sampler: str,
    randn: Callable[[], Array],
    parameterization: str = "v",
    clip: tuple[Array, Array] | None = (-1.0, 1.0),
    on_step: Callable[[int], None] | None = None,
) -> Array:
    """Run the reverse process over `plan` from x_T; return the final sample (x0).

    `denoise(x_t, t)` gets the original-grid timestep t; `randn()` returns fresh N(0, I) noise of
    x_T's shape (once per step but the last for the STOCHASTIC samplers, never for the others).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    x = x_T
    x0_prev, h_prev = None, None
    for i in reversed(range(plan.steps)):
        ab = float(plan.alphas_cumprod[i])
        ab_prev = float(plan.alphas_cumprod[i - 1]) if i > 0 else 1.0
        out = denoise(x, int(plan.timesteps[i]))
        x0, eps = x0_eps_from_output(x, out, math.sqrt(ab), math.sqrt(1.0 - ab), parameterization)
        if clip is not None:
            x0 = x0.clip(*clip)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
        if i == 0:
            x = x0  # every sampler ends on the denoised estimate at the smallest t
        elif sampler == "ddpm":
            x = ddpm_step(x, x0, ab, ab_prev, float(plan.betas[i]), randn())
        elif sampler == "ddim":
            x = ddim_step(x0, eps, ab_prev)
        else:
            second = x0_prev if i > 1 else None  # lower order on the final update
            if sampler == "dpmpp":
                x, h_prev = dpmpp_2m_step(x, x0, second, ab, ab_prev, h_prev)
            else:
                x, h_prev = dpmpp_2m_sde_step(x, x0, second, ab, ab_prev, h_prev, randn())
            x0_prev = x0
        if on_step is not None:
            on_step(plan.steps - i)
    return x

"""The shared diffusion math against closed forms written independently here (style.md 12)."""

import math

import numpy as np
import pytest
import torch

from lgcvd_runtime import samplers
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod, make_betas, respace


def closed_form_alpha_bar(t: int, T: int = 1000, s: float = 0.008) -> float:
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


def test_cosine_betas_match_the_closed_form_ratio_of_alpha_bars():
    betas = make_betas(ScheduleSpec())
    for t in (0, 1, 250, 500, 900, 998):
        expected = 1 - closed_form_alpha_bar(t + 1) / closed_form_alpha_bar(t)
        assert betas[t] == pytest.approx(min(expected, 0.9999), rel=1e-12)
    assert betas[-1] == 0.9999  # the last beta is clipped, as in the reference


def test_alpha_bar_is_the_product_of_one_minus_beta_and_follows_the_cosine_where_unclipped():
    ab = full_alphas_cumprod(ScheduleSpec())
    for t in (0, 100, 500, 900):
        assert ab[t] == pytest.approx(closed_form_alpha_bar(t + 1), rel=1e-9)
    assert ab.shape == (1000,) and np.all(np.diff(ab) < 0)


def test_respacing_keeps_evenly_spaced_indices_including_both_ends():
    plan = respace(ScheduleSpec(), 100)
    expected = [round(k * 999 / 99) for k in range(100)]
    assert plan.timesteps.tolist() == expected
    ab = full_alphas_cumprod(ScheduleSpec())
    np.testing.assert_allclose(plan.alphas_cumprod, ab[expected])
    # betas re-derived from the kept alpha bars: their products give back the kept alpha bars
    np.testing.assert_allclose(np.cumprod(1 - plan.betas), plan.alphas_cumprod, rtol=1e-9)
    assert "100 steps over t = 0, 10, 20, 30" in plan.describe()


@pytest.mark.parametrize("steps", [0, 1001])
def test_respacing_rejects_impossible_step_counts(steps):
    with pytest.raises(ValueError, match="steps must be in 1..1000"):
        respace(ScheduleSpec(), steps)


def test_v_parameterization_round_trips_x0_and_eps():
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    a, s = math.sqrt(0.3), math.sqrt(0.7)
    x_t = samplers.q_sample(x0, eps, a, s)
    v = samplers.v_target(x0, eps, a, s)
    np.testing.assert_allclose(v, a * eps - s * x0, rtol=1e-6)
    x0_hat, eps_hat = samplers.x0_eps_from_output(x_t, v, a, s, "v")
    np.testing.assert_allclose(x0_hat, x0, atol=1e-5)
    np.testing.assert_allclose(eps_hat, eps, atol=1e-5)
    x0_e, _ = samplers.x0_eps_from_output(x_t, eps, a, s, "eps")
    np.testing.assert_allclose(x0_e, x0, atol=1e-5)


def test_ddpm_step_is_the_posterior_of_eq_6():
    ab, ab_prev, beta = 0.5, 0.6, 1 - 0.5 / 0.6
    x_t, x0, z = np.float32(0.7), np.float32(-0.2), np.float32(1.3)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (
        math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
    ) * x_t
    var = (1 - ab_prev) / (1 - ab) * beta
    got = samplers.ddpm_step(x_t, x0, ab, ab_prev, beta, z)
    assert got == pytest.approx(mean + math.sqrt(var) * z, rel=1e-6)


def test_dpmpp_first_order_step_equals_ddim():
    """With no history, DPM-Solver++ is exactly deterministic DDIM (Lu et al. 2022, §4)."""
    ab, ab_prev = 0.3, 0.5
    x_t, x0 = np.float32(0.4), np.float32(0.1)
    eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    got, _ = samplers.dpmpp_2m_step(x_t, x0, None, ab, ab_prev, None)
    assert got == pytest.approx(samplers.ddim_step(x0, eps, ab_prev), rel=1e-5)


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
def test_samplers_keep_the_input_dtype_on_numpy_and_torch(sampler):
    plan = respace(ScheduleSpec(), 5)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((1, 6, 4, 4)).astype(np.float32)

    def randn_np():
        return rng.standard_normal(x_np.shape).astype(np.float32)

    out = samplers.sample(lambda x, t: 0.1 * x, x_np, plan, sampler, randn_np)
    assert out.dtype == np.float32
    x_t = torch.from_numpy(x_np)
    out_t = samplers.sample(
        lambda x, t: 0.1 * x, x_t, plan, sampler, lambda: torch.randn(1, 6, 4, 4)
    )
    assert out_t.dtype == torch.float32


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
def test_a_perfect_denoiser_recovers_the_clean_sample(sampler):
    """If the model returns the true v for a fixed x0, every sampler must end at that x0."""
    plan = respace(ScheduleSpec(), 50)
    ab_of = dict(zip(plan.timesteps.tolist(), plan.alphas_cumprod, strict=True))
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-0.9, 0.9, (1, 6, 4, 4))

    def oracle(x_t, t):  # eps implied by x_t and the known x0, converted to v
        a, s = math.sqrt(ab_of[t]), math.sqrt(1 - ab_of[t])
        eps = (x_t - a * x0) / s
        return a * eps - s * x0

    x_T = rng.standard_normal(x0.shape)
    out = samplers.sample(oracle, x_T, plan, sampler, lambda: rng.standard_normal(x0.shape))
    np.testing.assert_allclose(out, x0, atol=1e-6)


def test_unknown_sampler_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        samplers.sample(lambda x, t: x, np.zeros(1), respace(ScheduleSpec(), 2), "euler", None)

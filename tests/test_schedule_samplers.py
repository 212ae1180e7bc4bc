"""The schedule, the respacing, the parameterization conversions and single sampler steps against
closed forms written independently here. Whole loops: test_sampler_gaussian.py
(exact results for Gaussian data) and test_sampler_golden.py (golden values, every state)."""

import math

import numpy as np
import pytest
import torch

from lgcvd_runtime import samplers
from lgcvd_runtime.schedule import (
    ScheduleSpec,
    cosine_alpha_bar,
    full_alphas_cumprod,
    make_betas,
    plan_at,
    respace,
    spaced_timesteps,
)


def closed_form_alpha_bar(t: float, T: int = 1000, s: float = 0.008) -> float:
    """Nichol & Dhariwal 2021, Eq. 17: abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)."""
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


def test_cosine_alpha_bar_is_the_closed_form_from_one_down_to_zero():
    u = np.array([0.0, 0.001, 0.25, 0.5, 0.9, 0.999, 1.0])
    got = cosine_alpha_bar(u, 0.008)
    for ui, gi in zip(u, got, strict=True):
        assert gi == pytest.approx(closed_form_alpha_bar(ui * 1000), rel=1e-12, abs=1e-15)
    assert got[0] == 1.0 and got[-1] == pytest.approx(0.0, abs=1e-30)
    assert cosine_alpha_bar(np.array([0.5]), 0.1)[0] == pytest.approx(
        closed_form_alpha_bar(500, s=0.1), rel=1e-12
    )


def test_cosine_betas_match_the_closed_form_ratio_of_alpha_bars():
    betas = make_betas(ScheduleSpec())
    for t in (0, 1, 250, 500, 900, 998):
        expected = 1 - closed_form_alpha_bar(t + 1) / closed_form_alpha_bar(t)
        assert betas[t] == pytest.approx(min(expected, 0.9999), rel=1e-12)
    assert betas[-1] == 0.9999 and np.sum(betas == 0.9999) == 1  # only the last is clipped
    assert make_betas(ScheduleSpec(T=50))[10] == pytest.approx(
        1 - closed_form_alpha_bar(11, T=50) / closed_form_alpha_bar(10, T=50), rel=1e-12
    )


def test_alpha_bar_telescopes_to_the_cosine_and_only_the_clipped_last_step_departs():
    ab = full_alphas_cumprod(ScheduleSpec())
    for t in (0, 1, 100, 500, 900, 998):  # prod_{s<=t} f(s+1)/f(s) = f(t+1)/f(0)
        assert ab[t] == pytest.approx(closed_form_alpha_bar(t + 1), rel=1e-9)
    assert ab[999] == pytest.approx(closed_form_alpha_bar(999) * (1 - 0.9999), rel=1e-9)
    assert ab.shape == (1000,) and np.all(np.diff(ab) < 0)


def test_unknown_schedule_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown schedule 'linear'; known: cosine"):
        make_betas(ScheduleSpec(type="linear"))


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 100, 1000])
def test_respacing_keeps_evenly_spaced_original_indices_and_rederives_betas(steps):
    plan = respace(ScheduleSpec(), steps)
    # k (T-1)/(S-1) rounded half to even, as numpy rounds; a single step keeps T-1
    expected = [999] if steps == 1 else [round(k * 999 / (steps - 1)) for k in range(steps)]
    assert plan.timesteps.tolist() == expected and plan.steps == steps
    ab = full_alphas_cumprod(ScheduleSpec())
    np.testing.assert_array_equal(plan.alphas_cumprod, ab[expected])
    # betas re-derived from the kept abar: their running products give back abar at the kept steps
    np.testing.assert_allclose(np.cumprod(1 - plan.betas), ab[expected], rtol=1e-9, atol=1e-15)
    assert np.all((plan.betas > 0) & (plan.betas < 1))


def test_respacing_to_every_step_gives_back_the_original_betas():
    plan = respace(ScheduleSpec(), 1000)
    np.testing.assert_allclose(plan.betas, make_betas(ScheduleSpec()), rtol=1e-9)
    assert plan.timesteps.tolist() == list(range(1000))


def test_a_respaced_step_merges_the_original_ones_it_skips():
    """1 - beta'_i = prod of (1 - beta_t) over the original steps between two kept indices."""
    plan, betas = respace(ScheduleSpec(), 10), make_betas(ScheduleSpec())
    t = plan.timesteps
    for i in range(1, 10):
        merged = np.prod(1 - betas[t[i - 1] + 1 : t[i] + 1])
        assert 1 - plan.betas[i] == pytest.approx(merged, rel=1e-9)
    assert "10 steps over t = 0, 111, 222, 333, ..., 777, 888, 999" == plan.describe()


@pytest.mark.parametrize("steps", [0, 1001])
def test_respacing_rejects_impossible_step_counts(steps):
    with pytest.raises(ValueError, match="steps must be in 1..1000"):
        respace(ScheduleSpec(), steps)


AB_CASES = [1e-6, 0.02, 0.3, 0.5, 0.9, 0.9999]


@pytest.mark.parametrize("ab", AB_CASES)
def test_v_x0_and_eps_convert_into_each_other_as_identities(ab):
    rng = np.random.default_rng(int(ab * 1e6))
    x0, eps = rng.standard_normal((2, 3, 4, 4))
    a, s = math.sqrt(ab), math.sqrt(1 - ab)
    x_t, v = samplers.q_sample(x0, eps, a, s), samplers.v_target(x0, eps, a, s)
    # (x_t, v) is (x0, eps) rotated by the angle phi with cos phi = alpha: lengths are kept
    np.testing.assert_allclose(x_t**2 + v**2, x0**2 + eps**2, rtol=1e-12)
    np.testing.assert_allclose(x_t - s * eps, a * x0, atol=1e-14)  # Eq. 3
    np.testing.assert_allclose(a * v + s * x_t, eps, atol=1e-12)  # v's definition, solved for eps
    x0_v, eps_v = samplers.x0_eps_from_output(x_t, v, a, s, "v")
    np.testing.assert_allclose(x0_v, x0, atol=1e-12)
    np.testing.assert_allclose(eps_v, eps, atol=1e-12)
    x0_e, eps_e = samplers.x0_eps_from_output(x_t, eps, a, s, "eps")
    np.testing.assert_allclose(x0_e, x0, atol=1e-8 / a)
    np.testing.assert_array_equal(eps_e, eps)


def test_unknown_parameterization_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown parameterization 'x0'"):
        samplers.x0_eps_from_output(np.zeros(2), np.zeros(2), 0.5, 0.5, "x0")


def test_ddpm_step_mean_and_variance_are_the_bayes_posterior():
    """q(x_prev | x_t, x0): prior x_prev ~ N(sqrt(ab_prev) x0, 1 - ab_prev), likelihood
    x_t | x_prev ~ N(r x_prev, 1 - r^2), r^2 = ab / ab_prev; multiply and complete the square."""
    ab, ab_prev = 0.5, 0.6
    r2 = ab / ab_prev
    prec = 1 / (1 - ab_prev) + r2 / (1 - r2)
    x_t, x0, z = np.float32(0.7), np.float32(-0.2), np.float32(1.3)
    mean = (math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(r2) * x_t / (1 - r2)) / prec
    got_mean = samplers.ddpm_step(x_t, x0, ab, ab_prev, 1 - r2, None)
    got = samplers.ddpm_step(x_t, x0, ab, ab_prev, 1 - r2, z)
    assert got_mean == pytest.approx(mean, rel=1e-6)
    assert (got - got_mean) / z == pytest.approx(math.sqrt(1 / prec), rel=1e-6)
    assert got.dtype == np.float32


def test_ddim_step_puts_the_same_noise_at_the_new_level():
    rng = np.random.default_rng(3)
    x0, eps = rng.standard_normal((2, 5))
    got = samplers.ddim_step(x0, eps, 0.8)
    np.testing.assert_allclose(got, samplers.q_sample(x0, eps, math.sqrt(0.8), math.sqrt(0.2)))
    np.testing.assert_allclose(samplers.ddim_step(x0, eps, 1.0), x0)  # to abar = 1: the data


def test_dpmpp_first_order_step_equals_ddim_and_returns_the_log_snr_step():
    """With no history, DPM-Solver++ is exactly deterministic DDIM (Lu et al. 2022, §4)."""
    ab, ab_prev = 0.3, 0.5
    x_t, x0 = np.float32(0.4), np.float32(0.1)
    eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    got, h = samplers.dpmpp_2m_step(x_t, x0, None, ab, ab_prev, None)
    assert got == pytest.approx(math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps, rel=1e-5)
    assert h == pytest.approx(0.5 * math.log((0.5 / 0.5) / (0.3 / 0.7)), rel=1e-12)


def test_dpmpp_second_order_step_is_exact_when_x0_is_linear_in_log_snr():
    """If x0_hat(lambda) = p + q lambda exactly, the 2M extrapolation to the half step and the
    exponential integral agree up to phi_2 ~ phi_1 / 2: check against the exact integral
    x_prev = (sigma_p/sigma) x + sigma_p * int_lam^lam_p e^l (p + q l) dl to O(h^3)."""
    lam = lambda a: 0.5 * math.log(a / (1 - a))  # noqa: E731
    ab_old, ab, ab_prev = 0.30, 0.32, 0.34
    h_old = lam(ab) - lam(ab_old)
    p, q, x = 0.2, 0.5, 0.7
    l0, l1 = lam(ab), lam(ab_prev)
    integral = math.exp(l1) * (p + q * (l1 - 1)) - math.exp(l0) * (p + q * (l0 - 1))
    sp, s = math.sqrt(1 - ab_prev), math.sqrt(1 - ab)
    exact = sp / s * x + sp * integral
    got, _ = samplers.dpmpp_2m_step(x, p + q * l0, p + q * (l0 - h_old), ab, ab_prev, h_old)
    first, _ = samplers.dpmpp_2m_step(x, p + q * l0, None, ab, ab_prev, None)
    assert abs(got - exact) < 1e-5 < abs(first - exact)  # measured 2.2e-6 vs 2.9e-4 (h = 0.045)


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


def test_unknown_sampler_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        samplers.sample(lambda x, t: x, np.zeros(1), respace(ScheduleSpec(), 2), "euler", None)


def test_dpmpp_sde_step_is_the_bayes_posterior_step_around_the_extrapolated_x0():
    """SDE-DPM-Solver++: (s_p/s) e^-h = sqrt(ab/ab_p)(1 - ab_p)/(1 - ab), a_p (1 - e^-2h) =
    sqrt(ab_p) beta/(1 - ab), s_p^2 (1 - e^-2h) = beta tilde: the DDPM posterior (Lu et al. 2022),
    taken around D = x0 + (h / 2 h_prev)(x0 - x0_prev) when a previous x0 is given."""
    ab, ab_prev = 0.3, 0.5
    x_t, x0, older, z = np.float32(0.4), np.float32(0.1), np.float32(-0.3), np.float32(0.8)
    got, h = samplers.dpmpp_2m_sde_step(x_t, x0, None, ab, ab_prev, None, z)
    assert got == pytest.approx(samplers.ddpm_step(x_t, x0, ab, ab_prev, 1 - ab / ab_prev, z))
    assert got.dtype == np.float32
    got, h2 = samplers.dpmpp_2m_sde_step(x_t, x0, older, ab, ab_prev, 0.25, z)
    d = x0 + h / 0.5 * (x0 - older)
    assert h2 == h and got == pytest.approx(samplers.ddpm_step(x_t, d, ab, ab_prev, 0.4, z))


def closed_form_log_snr(t: int) -> float:
    """lambda = log(alpha / sigma) at table index t (the cosine at (t + 1)/T, t < T - 1)."""
    ab = closed_form_alpha_bar(t + 1)
    return 0.5 * math.log(ab / (1 - ab))


def closed_form_t_of_log_snr(lam: float, T: int = 1000, s: float = 0.008) -> float:
    """Invert the cosine: abar = 1 / (1 + e^(-2 lam)); abar = cos^2(((u + s)/(1 + s)) pi/2) /
    cos^2((s/(1 + s)) pi/2) solved for u; the table's abar[t] is the cosine at u = (t + 1)/T."""
    ab = 1 / (1 + math.exp(-2 * lam))
    u = math.acos(math.sqrt(ab) * math.cos(s / (1 + s) * math.pi / 2)) * 2 / math.pi * (1 + s) - s
    return u * T - 1


def test_the_trailing_grid_is_t_k_equals_round_tk_over_s_minus_one_and_nested():
    sixteen = [61, 124, 187, 249, 311, 374, 437, 499, 561, 624, 687, 749, 811, 874, 937, 999]
    assert spaced_timesteps(ScheduleSpec(), 16, "trailing").tolist() == sixteen  # 62.5 -> 62
    for s in (8, 4, 2, 1):
        assert (
            spaced_timesteps(ScheduleSpec(), s, "trailing").tolist()
            == sixteen[16 // s - 1 :: 16 // s]
        )
    assert spaced_timesteps(ScheduleSpec(), 3, "trailing").tolist() == [332, 666, 999]
    # 12.5 and 37.5 round half to even: 12 and 38
    assert spaced_timesteps(ScheduleSpec(T=50), 4, "trailing").tolist() == [11, 24, 37, 49]


@pytest.mark.parametrize("steps", [1, 2, 4, 10])
def test_the_log_snr_grid_is_uniform_in_lambda_from_the_floor_to_t_zero_and_drops_t_zero(steps):
    top = -5.1  # the floor: lambda(999) = -11.07 lies below it (the clipped last beta)
    wanted = [top + k / steps * (closed_form_log_snr(0) - top) for k in range(steps)][::-1]
    got = spaced_timesteps(ScheduleSpec(), steps, "log-snr").tolist()
    assert len(got) == steps and got == sorted(got)
    for t, lam in zip(got, wanted, strict=True):
        assert abs(t - closed_form_t_of_log_snr(lam)) <= 1  # the nearest of the integer t
        assert abs(closed_form_log_snr(t) - lam) <= min(
            abs(closed_form_log_snr(t + d) - lam) for d in (-1, 1)
        )
    assert spaced_timesteps(ScheduleSpec(), 1, "log-snr").tolist() == [995]


def test_the_even_spacing_is_respace_and_every_spacing_makes_a_plan():
    for steps in (1, 2, 10):
        assert (
            spaced_timesteps(ScheduleSpec(), steps, "even").tolist()
            == respace(ScheduleSpec(), steps).timesteps.tolist()
        )
    plan = plan_at(ScheduleSpec(), spaced_timesteps(ScheduleSpec(), 4, "trailing"))
    np.testing.assert_array_equal(
        plan.alphas_cumprod, full_alphas_cumprod(ScheduleSpec())[[249, 499, 749, 999]]
    )


def test_bad_spacings_and_step_counts_are_refused_in_one_line():
    with pytest.raises(
        ValueError, match="^unknown spacing 'karras'; choose one of even, trailing, log-snr$"
    ):
        spaced_timesteps(ScheduleSpec(), 4, "karras")
    with pytest.raises(ValueError, match="^steps must be in 1..1000, got 0$"):
        spaced_timesteps(ScheduleSpec(), 0, "trailing")
    with pytest.raises(
        ValueError, match="^400 steps uniform in log-SNR put two on one timestep; use fewer$"
    ):
        spaced_timesteps(ScheduleSpec(), 400, "log-snr")


def test_ancestral_ddim_with_eta_one_is_the_ddpm_step():
    """Song et al. 2021, Eq. 12 with eta = 1: x_prev = sqrt(ab_p) x0 + sqrt(1 - ab_p - sig^2) eps +
    sig z, sig^2 = (1 - ab_p)/(1 - ab) (1 - ab/ab_p); with eps solved from x_t and x0 it is
    `ddpm_step`, so ancestral DDIM is the `ddpm` sampler on the same plan."""
    ab, ab_prev = 0.2, 0.45
    x_t, x0, z = 0.9, -0.35, -1.1
    eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    sig2 = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    want = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sig2) * eps + math.sqrt(sig2) * z
    assert samplers.ddpm_step(x_t, x0, ab, ab_prev, 1 - ab / ab_prev, z) == pytest.approx(want)

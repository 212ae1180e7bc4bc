"""Every sampler against exact results for Gaussian data, derived here, not from `samplers.py`.

Data: x0 ~ N(mu, s^2) per pixel, x_t = alpha x0 + sigma eps (alpha^2 = abar, sigma^2 = 1 - abar).
Then x_t ~ N(alpha mu, c^2) with c^2 = alpha^2 s^2 + sigma^2, and the exact denoiser (the posterior
mean, Gaussian conditioning) is  x0_hat(x_t) = mu + k (x_t - alpha mu),  k = alpha s^2 / c^2.

Deterministic samplers (DDIM, DPM-Solver++) integrate the probability-flow ODE. Its velocity is
affine in x here (the score -(x - alpha mu) / c^2 is), so the flow map from time T to time t is an
affine map; a 1-D flow never lets two paths cross, so the map is increasing; and it carries the
marginal N(alpha_T mu, c_T^2) to N(alpha_t mu, c_t^2). The only increasing affine map between those
two Gaussians is x -> alpha_t mu + c_t (x - alpha_T mu) / c_T, so along every path
    z = (x_t - alpha_t mu) / c_t   is constant   (for mu = 0: x_t / sqrt(abar s^2 + 1 - abar)).
The sampler's output is x0_hat at the smallest t of the plan, so the exact endpoint is
x0_hat(alpha_0 mu + c_0 z).

DDPM (ancestral) is a linear-Gaussian chain here, so the mean and variance of its samples can be
propagated exactly (`ddpm_moments`) from the posterior q(x_prev | x_t, x0) written in Bayes'
precision form, and its samples tested against them within 5 standard errors.
"""

import math

import numpy as np
import pytest

from lgcvd_runtime import samplers
from lgcvd_runtime.schedule import Plan, ScheduleSpec, full_alphas_cumprod, respace

MU, S = 0.3, 0.5  # data mean and standard deviation
# abar at every original t (tested against the closed form in test_schedule_samplers.py)
AB_FULL = full_alphas_cumprod(ScheduleSpec())


def c_of(ab: float) -> float:
    """Standard deviation of the marginal of x_t."""
    return math.sqrt(ab * S * S + 1.0 - ab)


def exact_x0(x, ab: float):
    a = math.sqrt(ab)
    return MU + a * S * S / c_of(ab) ** 2 * (x - a * MU)


def gaussian_denoiser(ab_of: dict, parameterization: str, seen: list | None = None):
    """The exact model for Gaussian data, returning v (= alpha eps - sigma x0) or eps."""

    def denoise(x, t):
        if seen is not None:
            seen.append((t, x))
        ab = ab_of[t]
        a, sg = math.sqrt(ab), math.sqrt(1.0 - ab)
        x0 = exact_x0(x, ab)
        eps = (x - a * x0) / sg
        return a * eps - sg * x0 if parameterization == "v" else eps

    return denoise


def plan_from_alpha_bars(ab: np.ndarray) -> Plan:
    """A plan over arbitrary abar values (decreasing); its timestep labels are just 0..S-1."""
    prev = np.concatenate([[1.0], ab[:-1]])
    return Plan(timesteps=np.arange(len(ab)), alphas_cumprod=ab, betas=1.0 - ab / prev)


def log_snr_plan(t_hi: int, t_lo: int, steps: int) -> Plan:
    """`steps` points uniform in lambda = log(alpha / sigma) from abar(t_lo) to abar(t_hi)."""
    lam = lambda ab: 0.5 * math.log(ab / (1.0 - ab))  # noqa: E731
    lams = np.linspace(lam(AB_FULL[t_lo]), lam(AB_FULL[t_hi]), steps)
    return plan_from_alpha_bars(1.0 / (1.0 + np.exp(-2.0 * lams)))  # abar = sigmoid(2 lambda)


def abar_lookup(plan: Plan, full: bool) -> dict:
    """Original-grid t -> abar from the full table (so a loop that passed the wrong t would show),
    or label -> abar for a custom plan."""
    pairs = zip(plan.timesteps.tolist(), plan.alphas_cumprod, strict=True)
    return {t: float(AB_FULL[t] if full else a) for t, a in pairs}


def run(plan: Plan, sampler: str, x_T, parameterization="v", full=True, rng=None, seen=None):
    den = gaussian_denoiser(abar_lookup(plan, full), parameterization, seen)

    def randn():
        return rng.standard_normal(x_T.shape)

    return samplers.sample(den, x_T, plan, sampler, randn, parameterization, clip=None)


def exact_endpoint(plan: Plan, x_T):
    ab_T, ab_0 = float(plan.alphas_cumprod[-1]), float(plan.alphas_cumprod[0])
    z = (x_T - math.sqrt(ab_T) * MU) / c_of(ab_T)
    return exact_x0(math.sqrt(ab_0) * MU + c_of(ab_0) * z, ab_0)


X_T = np.linspace(-3.0, 3.0, 41)  # a spread of starting points, one "pixel" each

# ---------------------------------------------------------------- DDIM / DPM-Solver++ (the ODE)


def interior_errors(sampler, parameterization, steps=(40, 80, 160, 320)):
    errs = []
    for n in steps:
        plan = log_snr_plan(900, 100, n)
        out = run(plan, sampler, X_T, parameterization, full=False)
        errs.append(float(np.max(np.abs(out - exact_endpoint(plan, X_T)))))
    return np.array(errs)


@pytest.mark.parametrize("parameterization", samplers.PARAMETERIZATIONS)
def test_ddim_is_first_order_on_a_log_snr_grid_between_interior_times(parameterization):
    errs = interior_errors("ddim", parameterization)
    ratios = errs[:-1] / errs[1:]  # measured 2.02, 2.01, 2.00 (40 -> 320 steps)
    assert np.all((ratios > 1.9) & (ratios < 2.1)), ratios
    assert 0.02 < errs[0] < 0.06, errs  # measured 0.0385 at 40 steps


@pytest.mark.parametrize("parameterization", samplers.PARAMETERIZATIONS)
def test_dpmpp_2m_is_second_order_on_a_log_snr_grid_between_interior_times(parameterization):
    errs = interior_errors("dpmpp", parameterization)
    ratios = errs[:-1] / errs[1:]  # measured 5.19, 4.61, 4.31 (40 -> 320 steps), tending to 4
    assert np.all((ratios > 3.5) & (ratios < 6.0)), ratios
    order = -np.polyfit(np.log([40, 80, 160, 320]), np.log(errs), 1)[0]
    assert 1.9 < order < 2.5, order
    assert errs[0] < 2e-3, errs  # measured 5.8e-4 at 40 steps; DDIM's is 0.0385


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp"])
def test_deterministic_samplers_converge_to_the_exact_endpoint_on_the_respaced_plan(sampler):
    errs = []
    for n in (10, 20, 50, 100, 200):
        plan = respace(ScheduleSpec(), n)
        errs.append(float(np.max(np.abs(run(plan, sampler, X_T) - exact_endpoint(plan, X_T)))))
    assert np.all(np.diff(errs) < 0), errs
    # measured: ddim 0.308 .. 0.0150 (about 3 / steps); dpmpp 0.119 .. 4.4e-4
    assert errs[-1] < (0.02 if sampler == "ddim" else 1e-3), errs


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp"])
def test_every_intermediate_state_stays_on_the_exact_ode_path(sampler):
    """The states the network sees are close to the exact ODE solution at their own t, and
    closer with more steps (on_step counts every step once, in order)."""

    def worst(n):
        plan, seen, counted = respace(ScheduleSpec(), n), [], []
        den = gaussian_denoiser(abar_lookup(plan, True), "v", seen)
        samplers.sample(den, X_T, plan, sampler, None, clip=None, on_step=counted.append)
        assert counted == list(range(1, n + 1))
        assert [t for t, _ in seen] == plan.timesteps[::-1].tolist()  # original t, descending
        z = (X_T - math.sqrt(AB_FULL[999]) * MU) / c_of(AB_FULL[999])
        return max(
            float(np.max(np.abs(x - (math.sqrt(AB_FULL[t]) * MU + c_of(AB_FULL[t]) * z))))
            for t, x in seen
        )

    coarse, fine = worst(25), worst(100)
    assert fine < coarse / 3 and fine < 0.05, (coarse, fine)


# ---------------------------------------------------------------- DDPM (ancestral)


def ddpm_moments(ab: np.ndarray, full_posterior_variance=False):
    """Exact mean and variance of DDPM's states, from x_T ~ N(0, 1), at every step.

    One step from abar_c to abar_p (less noise): forward, x_c = r x_p + sqrt(1 - r^2) n with
    r^2 = abar_c / abar_p, and x_p | x0 ~ N(alpha_p x0, 1 - abar_p). By Bayes the posterior of x_p
    has precision P = 1/(1 - abar_p) + r^2/(1 - r^2) and mean (alpha_p x0/(1 - abar_p) +
    r x_c/(1 - r^2)) / P. DDPM puts x0 := x0_hat(x_c) and variance 1/P; the true reverse step would
    add w0^2 Var(x0 | x_c) (with it the chain is exact: see the test below).
    Returns [(mean, var)] for the states the network sees (x_T first) and then the output.
    """
    m, v, states = 0.0, 1.0, []
    for i in range(len(ab) - 1, 0, -1):
        states.append((m, v))
        c, p = float(ab[i]), float(ab[i - 1])
        r2 = c / p
        prec = 1.0 / (1.0 - p) + r2 / (1.0 - r2)
        w0, wc = math.sqrt(p) / (1.0 - p) / prec, math.sqrt(r2) / (1.0 - r2) / prec
        k = math.sqrt(c) * S * S / c_of(c) ** 2  # x0_hat = MU + k (x_c - alpha_c MU)
        gain, shift = w0 * k + wc, w0 * (MU - k * math.sqrt(c) * MU)
        missing = w0**2 * S * S * (1 - c) / c_of(c) ** 2  # w0^2 Var(x0 | x_c)
        noise_var = 1.0 / prec + (missing if full_posterior_variance else 0.0)
        m, v = gain * m + shift, gain * gain * v + noise_var
    states.append((m, v))
    k0 = math.sqrt(ab[0]) * S * S / c_of(ab[0]) ** 2
    states.append((MU + k0 * (m - math.sqrt(ab[0]) * MU), k0 * k0 * v))
    return states


def test_the_moment_propagation_is_exact_with_the_full_posterior_variance():
    """Checks the test's own derivation: with the true reverse step the output is N(mu, s^2) but
    for the last denoising (which drops Var(x0 | x_0) = s^2 sigma_0^2 / c_0^2)."""
    for n in (10, 100):
        ab = respace(ScheduleSpec(), n).alphas_cumprod
        m, v = ddpm_moments(ab, full_posterior_variance=True)[-1]
        lost = S * S * (1 - ab[0]) / c_of(ab[0]) ** 2
        assert m == pytest.approx(MU, abs=1e-9) and v == pytest.approx(S * S - lost, rel=1e-9)


def test_ddpm_moments_tend_to_the_data_distribution_as_steps_grow():
    """DDPM's beta-tilde variance drops w0^2 Var(x0 | x_t) per step, so its variance falls short at
    few steps (exact: -42% at 10, -12.7% at 50, -3.0% at 250, -0.80% at 1000) and the gap closes."""
    gaps = []
    for n in (10, 50, 250, 1000):
        m, v = ddpm_moments(respace(ScheduleSpec(), n).alphas_cumprod)[-1]
        assert m == pytest.approx(MU, abs=1e-9)
        gaps.append(1.0 - v / (S * S))
    assert np.all(np.diff(gaps) < 0) and 0 < gaps[-1] < 0.01, gaps


def within_5_standard_errors(x: np.ndarray, mean: float, var: float) -> None:
    """For n Gaussian samples the sample mean has s.e. sqrt(var/n), the sample variance
    var sqrt(2/(n-1)); 5 s.e. is a false alarm about once in 1.7 million checks."""
    n = x.size
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n), (x.mean(), mean)
    assert abs(x.var(ddof=1) - var) < 5 * var * math.sqrt(2 / (n - 1)), (x.var(ddof=1), var)


@pytest.mark.parametrize("parameterization", samplers.PARAMETERIZATIONS)
@pytest.mark.parametrize("steps", [10, 50, 250])
def test_ddpm_samples_have_the_exact_mean_and_variance_at_every_step(steps, parameterization):
    rng = np.random.default_rng(steps)
    plan, seen = respace(ScheduleSpec(), steps), []
    x_T = rng.standard_normal(20_000)
    out = run(plan, "ddpm", x_T, parameterization, rng=rng, seen=seen)
    expected = ddpm_moments(plan.alphas_cumprod)
    assert len(seen) == steps
    for (_, x), (m, v) in zip(seen + [(None, out)], expected, strict=True):
        within_5_standard_errors(x, m, v)


def test_ddpm_at_1000_steps_samples_the_data_distribution():
    """Against the data itself: mean mu and variance s^2 within 5 s.e. plus the 0.8% gap above."""
    rng = np.random.default_rng(0)
    out = run(respace(ScheduleSpec(), 1000), "ddpm", rng.standard_normal(20_000), rng=rng)
    assert abs(out.mean() - MU) < 5 * S / math.sqrt(out.size)
    assert abs(out.var(ddof=1) / S**2 - 1) < 0.008 + 5 * math.sqrt(2 / out.size)


# ---------------------------------------------------------------- SDE-DPM-Solver++(2M)


def sde_moments(ab: np.ndarray, second_order: bool = True, start=(0.0, 1.0)):
    """Exact mean and variance of the 2M SDE sampler's states from x ~ N(start) at ab[-1].

    Each step is the Bayes posterior of `ddpm_moments` taken around D = (1 + e) x0_hat(x) -
    e x0_older, e = h / (2 h_older) (Lu et al. 2022; e = 0 on the first and the final update, or
    everywhere when not second_order: DDPM). D reads the previous state too, so the pair
    (x, x0_older) is propagated: it is affine in the pair plus fresh noise, hence Gaussian.
    Returns [(mean, var)] of x for the states the network sees and then the output.
    """
    lam = lambda a: 0.5 * math.log(a / (1.0 - a))  # noqa: E731
    m, cov, h_older, states = np.array([start[0], 0.0]), np.diag([start[1], 0.0]), None, []
    for i in range(len(ab) - 1, 0, -1):
        states.append((m[0], cov[0, 0]))
        c, p = float(ab[i]), float(ab[i - 1])
        r2 = c / p
        prec = 1.0 / (1.0 - p) + r2 / (1.0 - r2)
        w0, wc = math.sqrt(p) / (1.0 - p) / prec, math.sqrt(r2) / (1.0 - r2) / prec
        k = math.sqrt(c) * S * S / c_of(c) ** 2
        h = lam(p) - lam(c)
        e = h / (2 * h_older) if second_order and h_older is not None and i > 1 else 0.0
        base = MU - k * math.sqrt(c) * MU  # x0_hat = k x + base
        gain = np.array([[wc + w0 * (1 + e) * k, -w0 * e], [k, 0.0]])
        m = gain @ m + np.array([w0 * (1 + e) * base, base])
        cov = gain @ cov @ gain.T + np.diag([1.0 / prec, 0.0])
        h_older = h
    states.append((m[0], cov[0, 0]))
    k0 = math.sqrt(ab[0]) * S * S / c_of(ab[0]) ** 2
    states.append((MU + k0 * (m[0] - math.sqrt(ab[0]) * MU), k0 * k0 * cov[0, 0]))
    return states


def test_the_sde_moments_without_the_second_order_term_are_ddpms():
    ab = respace(ScheduleSpec(), 20).alphas_cumprod
    np.testing.assert_allclose(sde_moments(ab, False), ddpm_moments(ab), rtol=1e-12)


@pytest.mark.parametrize("parameterization", samplers.PARAMETERIZATIONS)
@pytest.mark.parametrize("steps", [4, 10, 50])
def test_dpmpp_sde_samples_have_the_exact_mean_and_variance_at_every_step(steps, parameterization):
    rng = np.random.default_rng(steps + 7)
    plan, seen = respace(ScheduleSpec(), steps), []
    out = run(plan, "dpmpp-sde", rng.standard_normal(20_000), parameterization, rng=rng, seen=seen)
    assert len(seen) == steps
    for (_, x), (m, v) in zip(seen + [(None, out)], sde_moments(plan.alphas_cumprod), strict=True):
        within_5_standard_errors(x, m, v)


def test_dpmpp_sde_is_second_order_where_ddpm_is_first_in_the_reverse_sde_marginal():
    """Between interior times, from the exact marginal N(alpha mu, c^2) at t = 900, the state at
    t = 100 should again be N(alpha mu, c^2) there: the mean is exact for both (affine steps); the
    variance error halves per doubling for DDPM, quarters for 2M SDE (measured ratios 1.88, 1.94,
    1.97 against 6.05, 5.12, 4.49, from 10 to 80 steps)."""
    errors = {True: [], False: []}
    for n in (10, 20, 40, 80):
        ab = log_snr_plan(900, 100, n).alphas_cumprod
        start = (math.sqrt(ab[-1]) * MU, c_of(ab[-1]) ** 2)
        for second in errors:
            m, v = sde_moments(ab, second, start)[-2]  # the last state the network sees
            assert m == pytest.approx(math.sqrt(ab[0]) * MU, abs=1e-12)
            errors[second].append(abs(v - c_of(ab[0]) ** 2))
    first, second = np.array(errors[False]), np.array(errors[True])
    assert np.all((first[:-1] / first[1:] > 1.8) & (first[:-1] / first[1:] < 2.1)), first
    assert np.all((second[:-1] / second[1:] > 4.0) & (second[:-1] / second[1:] < 6.5)), second
    assert second[0] < first[0] / 3  # measured 0.026 against 0.078 at 10 steps

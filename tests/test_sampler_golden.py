"""Whole sampling loops on fixed inputs: golden outputs, and every intermediate state checked
against each sampler's defining step, written here in its own form (not copied from `samplers.py`).

The golden values were produced by the loop after it passed `test_sampler_gaussian.py` (exact
results for Gaussian data); they pin every coefficient, the clipping and the order of the steps.
The denoiser is a tiny fixed affine map, its output large enough that clipping at 1 is active.
"""

import math

import numpy as np
import pytest

from lgcvd_runtime import samplers
from lgcvd_runtime.schedule import ScheduleSpec, respace

X_T = np.array([-2.2, -1.0, -0.35, 0.0, 0.6, 1.4, 2.5])
PLAN = respace(ScheduleSpec(), 8)

GOLDEN = {  # (sampler, parameterization, clip) -> output of `sample` over PLAN from X_T
    ("ddpm", "v", 1.0): [0.385531228005488, 0.322410909042887, 0.212263276230431, 0.107267271948386, 0.0558648094579914, 0.0823046510232961, 0.17467620944672],
    ("ddpm", "v", None): [0.389126731278426, 0.323163858994945, 0.212263276230431, 0.107267271948386, 0.0558648094579914, 0.0816814129521097, 0.17144729749806],
    ("ddpm", "eps", 1.0): [0.53350133428868, 0.500170727771096, 0.465645285612478, 0.446167188991333, 0.450902854462727, 0.477626832191271, 0.513774125581907],
    ("ddim", "v", 1.0): [-0.297606327174772, 0.0313063429516058, 0.161762996145627, 0.222201563569943, 0.325810536297342, 0.479031747054223, 0.766619706808289],
    ("ddim", "v", None): [-0.157698003097188, 0.0495199423576106, 0.161762996145627, 0.222201563569943, 0.325810536297342, 0.463955833267208, 0.653905616600774],
    ("ddim", "eps", 1.0): [-0.680434735567679, 0.0162931841251848, 0.39368747395882, 0.596899783869238, 0.94526374371567, 1, 1],
    ("dpmpp", "v", 1.0): [-0.455838627859073, -0.0378167477011147, 0.143013698040901, 0.227528984855686, 0.372412333681031, 0.585350893637804, 0.95851470843136],
    ("dpmpp", "v", None): [-0.303709960837247, -0.0139432631865561, 0.143013698040901, 0.227528984855686, 0.372412333681031, 0.565590132114825, 0.831209604961291],
    ("dpmpp", "eps", 1.0): [-0.852145259104978, -0.0770692989074949, 0.342763512866142, 0.568827334590408, 0.956365314689149, 1, 1],
    ("dpmpp-sde", "v", 1.0): [0.45343908554066414, 0.3773155906377733, 0.2318652923662747, 0.08675995292719693, 0.007077148605856221, 0.03054051849583962, 0.14788390814409424],
    ("dpmpp-sde", "v", None): [0.46556513410846984, 0.3798549591196495, 0.2318652923662747, 0.08675995292719693, 0.007077148605856221, 0.02843861104455314, 0.13699421061403907],
    ("dpmpp-sde", "eps", 1.0): [0.6128473214321403, 0.5940521784389406, 0.5038616903652653, 0.38469825055608003, 0.29261194175986016, 0.2709142313081111, 0.3298136602573133],
}  # fmt: skip


def denoiser(seen: list | None = None, dtype=np.float64):
    def denoise(x, t):
        if seen is not None:
            seen.append((t, x))
        assert x.dtype == dtype
        return (0.6 + t / 2000) * x - 0.25

    return denoise


def noise_source(given: list, dtype=np.float64):
    """Fixed 'noise' from a formula (no generator whose stream could change between versions);
    each call's array is appended to `given`."""

    def randn():
        given.append(np.cos(1.3 * (len(given) + 1) + 0.7 * np.arange(X_T.size)).astype(dtype))
        return given[-1]

    return randn


def bounds(clip: float | None) -> tuple[float, float] | None:
    """The golden cases' symmetric clip as the (low, high) that `sample` takes."""
    return None if clip is None else (-clip, clip)


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: "-".join(map(str, c)))
def test_whole_loop_matches_its_golden_output(case):
    sampler, parameterization, clip = case
    given = []
    out = samplers.sample(
        denoiser(), X_T, PLAN, sampler, noise_source(given), parameterization, bounds(clip)
    )
    np.testing.assert_allclose(out, GOLDEN[case], rtol=1e-11, atol=1e-13)
    stochastic = sampler in samplers.STOCHASTIC
    assert len(given) == (PLAN.steps - 1 if stochastic else 0)  # no noise on the last step


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
def test_float32_in_gives_float32_out_and_the_same_loop(sampler):
    seen = []
    randn = noise_source([], np.float32)
    out = samplers.sample(denoiser(seen, np.float32), X_T.astype(np.float32), PLAN, sampler, randn)
    assert out.dtype == np.float32 and len(seen) == PLAN.steps  # every state float32 too
    np.testing.assert_allclose(out, GOLDEN[(sampler, "v", 1.0)], atol=2e-5)


def to_x0_eps(x, out, ab, parameterization, clip):
    """x0 and eps from the model output and x_t = alpha x0 + sigma eps (eps then re-solved from
    the clipped x0, so the pair stays consistent with x_t)."""
    a, sg = math.sqrt(ab), math.sqrt(1.0 - ab)
    # v = alpha eps - sigma x0 and x_t = alpha x0 + sigma eps: a rotation, inverted by its transpose
    x0 = a * x - sg * out if parameterization == "v" else (x - sg * out) / a
    if clip is not None:
        x0 = np.clip(x0, -clip, clip)
    return x0, (x - a * x0) / sg


def ddpm_expected(x, x0, ab, ab_prev, noise):
    """Posterior q(x_prev | x_t, x0) by Bayes: forward x_t = r x_prev + sqrt(1 - r^2) n with
    r^2 = ab / ab_prev, prior x_prev | x0 ~ N(sqrt(ab_prev) x0, 1 - ab_prev)."""
    r2 = ab / ab_prev
    precision = 1.0 / (1.0 - ab_prev) + r2 / (1.0 - r2)
    mean = (math.sqrt(ab_prev) * x0 / (1.0 - ab_prev) + math.sqrt(r2) * x / (1.0 - r2)) / precision
    return mean + noise / math.sqrt(precision)


def ddim_expected(x0, eps, ab_prev):
    """eta = 0: keep the predicted noise, move the signal level to ab_prev (Song et al., Eq. 12)."""
    return math.sqrt(ab_prev) * x0 + math.sqrt(1.0 - ab_prev) * eps


def dpmpp_expected(x, x0, x0_older, ab, ab_prev, h_older):
    """Lu et al. 2022 (DPM-Solver++(2M)): exponential integrator in lambda = log(alpha / sigma) with
    x0 extrapolated linearly in lambda from the last two estimates, to half the new step."""
    lam = lambda a: 0.5 * math.log(a / (1.0 - a))  # noqa: E731
    h = lam(ab_prev) - lam(ab)
    d = x0 if x0_older is None else x0 + (h / (2.0 * h_older)) * (x0 - x0_older)
    ratio = math.sqrt((1.0 - ab_prev) / (1.0 - ab))
    return ratio * x + math.sqrt(ab_prev) * (1.0 - math.exp(-h)) * d, h


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: "-".join(map(str, c)))
def test_every_intermediate_state_follows_the_samplers_defining_step(case):
    sampler, parameterization, clip = case
    seen, counted, given = [], [], []
    out = samplers.sample(
        denoiser(seen), X_T, PLAN, sampler, noise_source(given), parameterization, bounds(clip),
        counted.append,
    )  # fmt: skip
    assert counted == list(range(1, PLAN.steps + 1))
    assert [t for t, _ in seen] == PLAN.timesteps[::-1].tolist()  # original-grid t, descending
    np.testing.assert_array_equal(seen[0][1], X_T)
    ab = PLAN.alphas_cumprod
    x0_older, h_older = None, None
    for step, (t, x) in enumerate(seen):
        i = PLAN.steps - 1 - step
        x0, eps = to_x0_eps(x, denoiser()(x, t), float(ab[i]), parameterization, clip)
        if i == 0:  # the loop ends on the denoised estimate at the smallest t
            np.testing.assert_allclose(out, x0, rtol=1e-12, atol=1e-14)
            break
        if sampler == "ddpm":
            want = ddpm_expected(x, x0, float(ab[i]), float(ab[i - 1]), given[step])
        elif sampler == "ddim":
            want = ddim_expected(x0, eps, float(ab[i - 1]))
        else:  # second order except on the first step (no history) and the last update
            older = x0_older if i > 1 else None
            want, h = dpmpp_expected(x, x0, older, float(ab[i]), float(ab[i - 1]), h_older)
            if sampler == "dpmpp-sde":  # the posterior around dpmpp's extrapolated x0
                d = x0 if older is None else x0 + h / (2 * h_older) * (x0 - older)
                want = ddpm_expected(x, d, float(ab[i]), float(ab[i - 1]), given[step])
            x0_older, h_older = x0, h
        np.testing.assert_allclose(seen[step + 1][1], want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("sampler", samplers.SAMPLERS)
def test_one_step_plan_returns_the_denoised_start(sampler):
    plan = respace(ScheduleSpec(), 1)
    out = samplers.sample(denoiser(), X_T, plan, sampler, noise_source([]))
    x0, _ = to_x0_eps(X_T, denoiser()(X_T, 999), float(plan.alphas_cumprod[0]), "v", 1.0)
    np.testing.assert_allclose(out, x0, rtol=1e-12)

"""The training recipe's loss weighting and speed options (docs/results.md, Training efficiency).

min-SNR-gamma is defined on the x0 error: weight min(SNR_t, gamma) on |x0_hat - x0|^2. The
tests rebuild x0_hat from each parameterization's output with the textbook relations written
here (v: x0_hat = alpha x_t - sigma v_hat; eps: x0_hat = (x_t - sigma eps_hat) / alpha) and the
cosine schedule's closed form, and require the weighted target loss to equal that x0 loss. The
speed options must not change what a step computes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train.config import TrainConfig
from lgcvd_train.loss_weighting import LossWeightingError, WeightedLoss
from lgcvd_train.speed import BatchSource, SpeedOptionError, make_adam, prepare_model

GAMMA = 5.0


def cosine_abar(t: int) -> float:
    """abar_t = f((t+1)/T) / f(0), f(u) = cos^2((u + s)/(1 + s) pi/2), T = 1000, s = 0.008 (no
    beta is clipped below t = 990)."""

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return f((t + 1) / 1000) / f(0)


@pytest.mark.parametrize("parameterization", ["v", "eps"])
@pytest.mark.parametrize("t", [50, 300, 900])  # SNR about 100 (> gamma), 3.6 and 0.02
def test_min_snr_weights_the_target_loss_as_min_snr_gamma_on_the_x0_error(parameterization, t):
    abar = cosine_abar(t)
    alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
    snr = abar / (1 - abar)
    gen = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(2, 6, 4, 4, generator=gen), torch.randn(2, 6, 4, 4, generator=gen)
    x_t = alpha * x0 + sigma * eps
    error = 0.1 * torch.randn(2, 6, 4, 4, generator=gen)
    if parameterization == "v":
        target = alpha * eps - sigma * x0
        x0_hat = alpha * x_t - sigma * (target + error)
    else:
        target = eps
        x0_hat = (x_t - sigma * (target + error)) / alpha
    x0_loss = min(snr, GAMMA) * torch.mean((x0_hat - x0) ** 2).item()
    loss = WeightedLoss("l2", "min-snr", GAMMA, ScheduleSpec(), parameterization)
    got = loss(target + error, target, torch.full((2,), t)).item()
    assert got == pytest.approx(x0_loss, rel=1e-4)


def test_no_weighting_is_the_plain_mean_loss():
    out, tgt = torch.zeros(2, 3), torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 6.0]])
    loss = WeightedLoss("l1", "none", GAMMA, ScheduleSpec(), "v")
    assert loss(out, tgt, torch.tensor([10, 900])).item() == pytest.approx(2.0)


def test_bad_weighting_options_are_one_line():
    with pytest.raises(LossWeightingError, match=r"^loss weighting 'snr' is unknown; choose one"):
        WeightedLoss("l1", "snr", GAMMA, ScheduleSpec(), "v")
    with pytest.raises(LossWeightingError, match=r"^--snr-gamma 0.0: gamma is a finite number"):
        WeightedLoss("l1", "min-snr", 0.0, ScheduleSpec(), "v")


def test_the_default_recipe_is_the_study_s_winner():
    cfg = TrainConfig()
    assert (cfg.loss_weighting, cfg.snr_gamma, cfg.adam) == ("min-snr", 5.0, "fused")


def test_fused_adam_takes_the_same_steps_as_torch_s_default():
    torch.manual_seed(0)
    start = torch.nn.Linear(16, 8)
    models = [torch.nn.Linear(16, 8) for _ in range(2)]
    for m in models:
        m.load_state_dict(start.state_dict())
    opts = [make_adam(m.parameters(), 1e-2, impl, torch.device("cpu")) for m, impl in
            zip(models, ("default", "fused"), strict=True)]  # fmt: skip
    x = torch.randn(32, 16)
    for _ in range(5):
        for m, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    assert not torch.equal(models[0].weight, start.weight)
    torch.testing.assert_close(models[0].weight, models[1].weight, rtol=1e-5, atol=1e-6)


def test_an_adam_this_project_dropped_is_one_line():
    with pytest.raises(SpeedOptionError, match=r"^--adam foreach: unknown implementation; "
                       r"choose one of default, fused$"):  # fmt: skip
        make_adam(torch.nn.Linear(2, 2).parameters(), 1e-3, "foreach", torch.device("cpu"))


def test_channels_last_keeps_the_network_s_outputs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU())
    x = torch.randn(2, 4, 8, 8)
    plain = net(x)
    fast = prepare_model(net, channels_last=True)
    assert fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), plain)


def test_prefetched_batches_are_the_batches_of_their_steps():
    def make(step):
        return np.random.default_rng(step).random(3)

    ahead = BatchSource(make, True, last_step=6)
    try:
        for step in (0, 1, 2, 4, 5):  # 4: not the step prepared (a resume), the thread recovers
            np.testing.assert_array_equal(ahead.batch(step), make(step))
    finally:
        ahead.close()

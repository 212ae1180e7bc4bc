"""Training options of issue 18 item 1: min-SNR-gamma loss weighting (maths checked against the
x0-error identity), Adam implementations, channels-last, torch.compile and the batch prefetch
thread: they run, are recorded in the checkpoint, and keep resume exact."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_training import moving_squares

from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod
from lgcvd_train.checkpoint import FILENAME, META_KEY, load_checkpoint
from lgcvd_train.cli import main as train_main
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.loss_weighting import LossWeightingError, WeightedLoss
from lgcvd_train.speed import BatchSource, SpeedOptionError, make_adam
from lgcvd_train.trainer import Trainer

SPEC = ScheduleSpec()
GAMMA = 5.0


def draws(seed: int = 0, b: int = 6):
    """x0, eps, a network output and timesteps spanning SNR above and below gamma."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((b, 6, 4, 4), generator=g) * 2 - 1
    eps = torch.randn((b, 6, 4, 4), generator=g)
    guess = torch.randn((b, 6, 4, 4), generator=g)
    t = torch.tensor([0, 10, 60, 150, 400, 800])[:b]
    ab = torch.tensor(full_alphas_cumprod(SPEC))[t].float().view(-1, 1, 1, 1)
    return x0, eps, guess, t, ab.sqrt(), (1 - ab).sqrt(), ab / (1 - ab)


def per_sample_mse(a, b):
    return ((a - b) ** 2).flatten(1).mean(1)


def test_min_snr_on_v_is_min_snr_times_the_x0_error():
    # v = a eps - s x0 and x0_hat = a x_t - s v_hat give x0 - x0_hat = s (v_hat - v), so
    # |v - v_hat|^2 = |x0 - x0_hat|^2 / s^2 = (SNR + 1) |x0 - x0_hat|^2: weighting the v loss by
    # min(SNR, g) / (SNR + 1) weights the x0 error by min(SNR, g).
    x0, eps, v_hat, t, a, s, snr = draws()
    assert (snr.flatten() > GAMMA).any() and (snr.flatten() < GAMMA).any()
    x_t = a * x0 + s * eps
    v = a * eps - s * x0
    x0_hat = a * x_t - s * v_hat
    expected = (snr.clamp(max=GAMMA).flatten() * per_sample_mse(x0_hat, x0)).mean()
    got = WeightedLoss("l2", "min-snr", GAMMA, SPEC, "v")(v_hat, v, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_min_snr_on_eps_is_min_snr_times_the_x0_error():
    # x0_hat = (x_t - s eps_hat) / a gives |eps - eps_hat|^2 = SNR |x0 - x0_hat|^2.
    x0, eps, eps_hat, t, a, s, snr = draws(1)
    x0_hat = (a * x0 + s * eps - s * eps_hat) / a
    expected = (snr.clamp(max=GAMMA).flatten() * per_sample_mse(x0_hat, x0)).mean()
    got = WeightedLoss("l2", "min-snr", GAMMA, SPEC, "eps")(eps_hat, eps, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_no_weighting_is_todays_loss_exactly():
    _, tgt, out, t, *_ = draws(2)
    for kind, plain in (("l1", F.l1_loss), ("l2", F.mse_loss)):
        assert torch.equal(
            WeightedLoss(kind, "none", GAMMA, SPEC, "v")(out, tgt, t), plain(out, tgt)
        )


def test_min_snr_weights_l1_per_sample():
    _, tgt, out, t, _, _, snr = draws(3)
    w = snr.clamp(max=GAMMA).flatten() / (snr.flatten() + 1)
    expected = (w * (out - tgt).abs().flatten(1).mean(1)).mean()
    got = WeightedLoss("l1", "min-snr", GAMMA, SPEC, "v")(out, tgt, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bad_weighting_options_are_one_line_errors():
    with pytest.raises(
        LossWeightingError, match=r"^loss weighting 'snr' is unknown; choose one of none, min-snr$"
    ):
        WeightedLoss("l2", "snr", GAMMA, SPEC, "v")
    with pytest.raises(
        LossWeightingError, match=r"^--snr-gamma 0.0: gamma is a finite number > 0$"
    ):
        WeightedLoss("l2", "min-snr", 0.0, SPEC, "v")
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(
        SpeedOptionError,
        match=r"^--adam turbo: unknown implementation; choose one of default, foreach, fused$",
    ):
        make_adam(params, 1e-3, "turbo", torch.device("cpu"))


def test_adam_implementations_take_the_same_steps():
    results = []
    for impl in ("default", "foreach", "fused"):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 5))
        opt = make_adam([p], 1e-2, impl, torch.device("cpu"))
        for _ in range(3):
            opt.zero_grad()
            (p**3).sum().backward()
            opt.step()
        results.append(p.detach().clone())
    for r in results[1:]:
        torch.testing.assert_close(r, results[0])


def test_lgcvd_train_option_defaults_are_the_config_defaults():
    given = {p.name: p.default for p in train_main.params}
    cfg = TrainConfig()
    for option in ("loss_weighting", "snr_gamma", "adam", "channels_last", "prefetch"):
        assert given[option] == getattr(cfg, option), option
    assert given["compile_model"] == cfg.compile


def test_checkpoints_without_the_new_fields_still_load(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=1, save_every=100)
    Trainer(preset("tiny"), cfg, moving_squares(2), tmp_path, {}, progress=False).fit()
    path = tmp_path / FILENAME
    with safe_open(path, framework="pt") as sf:
        state = json.loads(sf.metadata()[META_KEY])
    for name in ("loss_weighting", "snr_gamma", "adam", "channels_last", "compile", "prefetch"):
        del state["train_config"][name]
    save_file(load_file(path), path, {META_KEY: json.dumps(state)})
    assert load_checkpoint(path).train_config == cfg


BASE = TrainConfig(steps=4, batch_size=2, lr=1e-3, save_every=2, log_every=1)
OPTIONS = [
    {"loss_weighting": "min-snr", "snr_gamma": 3.0},
    {"adam": "foreach"},
    {"adam": "fused"},
    {"channels_last": True},
    {"prefetch": True},
]


@pytest.mark.parametrize(
    "option", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_each_option_trains_records_and_resumes_exactly(tmp_path, option):
    videos, mcfg = moving_squares(3), preset("tiny")
    cfg = replace(BASE, **option)
    full = Trainer(mcfg, cfg, videos, tmp_path / "full", {}, progress=False).fit()
    recorded = load_checkpoint(tmp_path / "full").train_config
    assert recorded == cfg
    assert all(np.isfinite(r["loss"]) for r in full)
    Trainer(mcfg, replace(cfg, steps=2), videos, tmp_path / "cut", {}, progress=False).fit()
    rest = Trainer(mcfg, cfg, videos, tmp_path / "cut", {}, resume=True, progress=False).fit()
    assert [r["loss"] for r in rest] == pytest.approx([r["loss"] for r in full[2:]], abs=1e-6)


def test_speed_options_do_not_change_the_batches_or_the_losses(tmp_path):
    videos, mcfg = moving_squares(3), preset("tiny")
    plain = Trainer(mcfg, BASE, videos, tmp_path / "a", {}, progress=False).fit()
    ahead = replace(BASE, prefetch=True)
    prefetched = Trainer(mcfg, ahead, videos, tmp_path / "b", {}, progress=False).fit()
    assert [r["loss"] for r in prefetched] == [r["loss"] for r in plain]  # the same batches
    # other kernels sum in another order: the same losses up to rounding (bf16 where native)
    fast_cfg = replace(ahead, adam="foreach", channels_last=True)
    fast = Trainer(mcfg, fast_cfg, videos, tmp_path / "c", {}, progress=False).fit()
    assert [r["loss"] for r in fast] == pytest.approx([r["loss"] for r in plain], rel=1e-3)


def test_a_resume_changes_the_speed_options_but_keeps_the_loss_weighting(tmp_path):
    videos, mcfg = moving_squares(2), preset("tiny")
    cfg = replace(BASE, steps=2, loss_weighting="min-snr")
    Trainer(mcfg, cfg, videos, tmp_path, {}, progress=False).fit()
    asked = replace(BASE, steps=4, adam="foreach", prefetch=True, channels_last=True)
    resumed = Trainer(mcfg, asked, videos, tmp_path, {}, resume=True, progress=False)
    got = resumed.tcfg
    assert (got.adam, got.prefetch, got.channels_last) == ("foreach", True, True)
    assert got.loss_weighting == "min-snr"
    resumed.fit()
    assert load_checkpoint(tmp_path).train_config == replace(
        cfg,
        **{
            k: v
            for k, v in asdict(asked).items()
            if k in ("steps", "adam", "prefetch", "channels_last")
        },
    )


def test_prefetched_batches_are_the_ones_made_in_line():
    made = []

    def make(step):
        made.append(step)
        return step * 10

    source = BatchSource(make, ahead=True, last_step=5)
    try:
        assert [source.batch(s) for s in (0, 1, 2)] == [0, 10, 20]
        assert source.batch(4) == 40  # not the prepared step 3: made afresh
    finally:
        source.close()
    assert made[:3] == [0, 1, 2] and 4 in made and 5 not in made


def test_a_compiled_run_saves_the_plain_weight_names(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=1, save_every=100, compile=True)
    trainer = Trainer(preset("tiny"), cfg, moving_squares(2), tmp_path, {}, progress=False)
    trainer.fit()
    names = list(load_file(tmp_path / FILENAME))
    assert not any("_orig_mod" in n for n in names)
    assert load_checkpoint(tmp_path).train_config.compile is True
    plain = {f"model.{k}" for k in trainer.model.state_dict()}
    assert plain <= set(names)


def test_fused_adam_where_torch_has_none_is_a_one_line_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("fused=True requires all the params to be floating point Tensors")

    monkeypatch.setattr(torch.optim, "Adam", refuse)
    with pytest.raises(
        SpeedOptionError, match=r"^--adam fused does not run on cpu .*; use --adam foreach$"
    ):
        make_adam([torch.nn.Parameter(torch.zeros(2))], 1e-3, "fused", torch.device("cpu"))

"""Two-stage training: detached stage-1 estimate, overfitting, exact resume, DDP over gloo."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lgcvd_runtime.conditioning import build_condition, stack_window, to_model
from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.diffusion import Schedule, estimate_x0
from lgcvd_train.trainer import METRICS, Trainer
from lgcvd_train.two_stage import TwoStageStep, bf16_native, draw_positions, sample_clips


def moving_squares(n_videos: int = 2, frames: int = 16, size: int = 32) -> list[np.ndarray]:
    videos = []
    for i in range(n_videos):
        v = np.zeros((frames, size, size, 3), np.uint8)
        for f in range(frames):
            x = (2 * f + 5 * i) % (size - 8)
            v[f, 8:16, x : x + 8] = (220, 60, 60)
            v[f, 20:28, size - 8 - x : size - x] = (60, 200, 90)
        videos.append(v)
    return videos


def test_random_task_positions_are_distinct_and_never_the_last_frame():
    rng = np.random.default_rng(0)
    draws = [draw_positions("random", rng, 8, 2) for _ in range(300)]
    assert all(a != b for a, b in draws)
    assert {p for d in draws for p in d} == set(range(-1, 7))
    assert draw_positions("interpolation", rng, 8, 2) == [0, 7]
    assert draw_positions("unconditional", rng, 8, 2) == [-1, -1]


def test_clips_are_drawn_deterministically_per_step_and_differ_between_ranks():
    videos = moving_squares(4)
    cfg = TrainConfig(batch_size=2)
    a = sample_clips(videos, 5, 0, 2, cfg)
    np.testing.assert_array_equal(a, sample_clips(videos, 5, 0, 2, cfg))
    assert a.shape == (2, 14, 3, 32, 32)
    assert not np.array_equal(a, sample_clips(videos, 5, 1, 2, cfg))


def test_stage_two_receives_the_detached_stage_one_estimate(tiny_model):
    cfg = TrainConfig(batch_size=2, task_weights={"prediction": 1.0})
    step = TwoStageStep(tiny_model.cfg, cfg, torch.device("cpu"))
    seen = []
    tiny_model.register_forward_hook(lambda m, args, out: seen.append(args))
    clips = sample_clips(moving_squares(), 0, 0, 1, cfg)
    out = step(tiny_model.train(), clips, 0, 0)
    (x_t1, t1, _, prev1), (_, _, cond2, prev2) = seen
    assert torch.count_nonzero(prev1) == 0  # stage 1: the encoder sees U
    alpha, sigma = Schedule(ScheduleSpec()).coefficients(t1)
    expected = estimate_x0(x_t1, out.out1.detach(), alpha, sigma, "v")
    torch.testing.assert_close(prev2, expected)  # stage 2: the encoder sees x̂0 ...
    assert not prev2.requires_grad and prev2.grad_fn is None  # ... detached from stage 1
    assert out.out1.requires_grad  # while stage 1's own output was part of a graph
    # prediction task: stage-2 condition frames are x̂0's last two frames, not ground truth
    x0_frames = prev2.view(2, 8, 3, 32, 32)
    torch.testing.assert_close(cond2[:, 0:3], x0_frames[:, 6])
    torch.testing.assert_close(cond2[:, 4:7], x0_frames[:, 7])


def test_without_two_stage_stage_two_sees_ground_truth(tiny_model):
    cfg = TrainConfig(batch_size=2, task_weights={"prediction": 1.0}, two_stage=False)
    step = TwoStageStep(tiny_model.cfg, cfg, torch.device("cpu"))
    clips = sample_clips(moving_squares(), 0, 0, 1, cfg)
    out = step(tiny_model.train(), clips, 0, 0)
    torch.testing.assert_close(out.prev2, torch.from_numpy(stack_window(clips[:, :8])))
    torch.testing.assert_close(out.cond2[:, 0:3], torch.from_numpy(clips[:, 6]))


@pytest.mark.parametrize("amp", [True, False])
def test_amp_runs_the_network_in_bf16_where_the_device_has_it(tiny_model, amp):
    if amp and not bf16_native(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 / AMX): amp is off here")
    cfg = TrainConfig(batch_size=2, amp=amp)
    step = TwoStageStep(tiny_model.cfg, cfg, torch.device("cpu"))
    out = step(tiny_model.train(), sample_clips(moving_squares(), 0, 0, 1, cfg), 0, 0)
    assert out.out1.dtype == (torch.bfloat16 if amp else torch.float32)
    assert out.x0_hat.dtype == torch.float32  # the stage-2 inputs and the loss stay fp32
    assert np.isfinite(out.loss) and all(
        p.grad.dtype == torch.float32 for p in tiny_model.parameters() if p.grad is not None
    )


def x0_error(model, video: np.ndarray) -> float:
    """Mean |x̂0 - x0| of the one-step estimate (Eq. 7) on the clip's first window, at five fixed
    timesteps and fixed noise, for the prediction task."""
    w = to_model(video[None])[:, :8]
    x0 = torch.from_numpy(stack_window(w)).repeat(5, 1, 1, 1)
    cond = torch.from_numpy(build_condition(w, np.array([[0, 1]]), 8)).repeat(5, 1, 1, 1)
    t = torch.tensor([100, 300, 500, 700, 900])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    alpha, sigma = Schedule(ScheduleSpec()).coefficients(t)
    x_t = alpha * x0 + sigma * eps
    with torch.no_grad():
        out = model(x_t, t, cond, torch.zeros_like(x0))
    return (estimate_x0(x_t, out, alpha, sigma, "v") - x0).abs().mean().item()


@pytest.mark.slow
def test_a_tiny_model_overfits_one_clip(tmp_path):
    """On one clip the estimate of x0 becomes several times better within 200 CPU steps. (The v
    loss itself falls more slowly: at small t, v = (alpha x_t - x0) / sigma asks the network to
    amplify the noise in x_t, which a small network learns over many more steps.)"""
    video = moving_squares(1, frames=14)
    cfg = TrainConfig(
        steps=200,
        batch_size=8,
        lr=2e-3,
        hflip=False,
        save_every=10_000,
        log_every=10_000,
        task_weights={"prediction": 1.0},
        loss_weighting="none",  # the v loss the docstring reasons about, every t alike
    )
    trainer = Trainer(preset("tiny"), cfg, video, tmp_path, {}, progress=False)
    before = x0_error(trainer.model, video[0])
    records = trainer.fit()
    after = x0_error(trainer.model, video[0])
    losses = np.array([r["loss"] for r in records])
    print(
        f"overfit: x0 error {before:.4f} -> {after:.4f} ({before / after:.1f}x); "
        f"v loss {losses[:10].mean():.4f} -> {losses[-20:].mean():.4f}"
    )
    assert before / after > 3
    assert losses[-20:].mean() < 0.8 * losses[:10].mean()


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path):
    videos = moving_squares(3)
    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-3, save_every=3, log_every=1)
    mcfg = preset("tiny")
    full = Trainer(mcfg, cfg, videos, tmp_path / "full", {}, progress=False).fit()
    first = {"command": "lgcvd-train first"}
    Trainer(mcfg, replace(cfg, steps=2), videos, tmp_path / "cut", first, progress=False).fit()
    again = {"command": "lgcvd-train again"}
    Trainer(
        mcfg, replace(cfg, steps=3), videos, tmp_path / "cut", again, resume=True, progress=False
    ).fit()
    resumed = Trainer(mcfg, cfg, videos, tmp_path / "cut", again, resume=True, progress=False)
    assert resumed.step == 3
    # the run keeps the command that started it and records where it was continued
    assert resumed.provenance == {
        "command": "lgcvd-train first",
        "resumed_at": [2, 3],
        "resume_command": "lgcvd-train again",
    }
    rest = resumed.fit()
    assert [r["loss"] for r in rest] == pytest.approx([r["loss"] for r in full[3:]], abs=1e-6)
    log = [json.loads(x) for x in (tmp_path / "cut" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_cooldown_decays_the_learning_rate_linearly_over_the_last_steps():
    cfg = TrainConfig(steps=10, lr=1e-3, cooldown=4)
    assert [cfg.lr_at(s) for s in range(10)] == pytest.approx(
        [1e-3] * 6 + [1e-3, 0.75e-3, 0.5e-3, 0.25e-3]
    )
    assert {TrainConfig(steps=10, lr=1e-3).lr_at(s) for s in range(10)} == {1e-3}


def test_a_resumed_run_can_be_extended_with_a_cooldown(tmp_path):
    videos, mcfg = moving_squares(2), preset("tiny")
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, log_every=1)
    Trainer(mcfg, cfg, videos, tmp_path, {}, progress=False).fit()
    # a resume takes the new steps and cooldown, but keeps the run's own lr
    longer = replace(cfg, steps=6, cooldown=2, lr=5.0)
    resumed = Trainer(mcfg, longer, videos, tmp_path, {}, resume=True, progress=False)
    assert (resumed.tcfg.steps, resumed.tcfg.cooldown, resumed.tcfg.lr) == (6, 2, 1e-3)
    resumed.fit()
    log = [json.loads(x) for x in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([1e-3] * 5 + [0.5e-3])
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)


DDP_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch, torch.distributed as dist
    from pathlib import Path
    from lgcvd_train.config import TrainConfig, preset
    from lgcvd_train.trainer import Trainer
    torch.set_num_threads(1)
    videos = [np.random.default_rng(i).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
              for i in range(4)]
    cfg = TrainConfig(steps=3, batch_size=1, lr=1e-3, save_every=100)
    tr = Trainer(preset("tiny"), cfg, videos, Path(sys.argv[1]), {}, progress=False)
    tr.fit()
    flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
    torch.save(flat, Path(sys.argv[1]) / f"rank{dist.get_rank()}.pt")
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_gloo_processes_hold_identical_weights_after_training(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        str(script),
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    torch.testing.assert_close(w0, w1, rtol=0, atol=0)
    init = Trainer(preset("tiny"), TrainConfig(), [], Path(tmp_path / "x"), {}, progress=False)
    assert not torch.equal(w0, torch.cat([p.flatten() for p in init.model.parameters()]))


def test_lgcvd_train_cli_trains_writes_a_checkpoint_and_refuses_to_clobber_it(tmp_path):
    from click.testing import CliRunner

    from lgcvd_train.checkpoint import load_checkpoint
    from lgcvd_train.cli import main

    out = tmp_path / "run"
    args = [
        "--preset",
        "tiny",
        "--data",
        "shapes",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--num-videos",
        "4",
        "--out",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.step == 2 and ckpt.model_config == preset("tiny")
    assert ckpt.state["provenance"]["command"].startswith("lgcvd-train ")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: {out} already holds a checkpoint; pass --resume to continue it or --force to "
        "start over"
    )
    more = CliRunner().invoke(main, [*args[:5], "4", *args[6:], "--resume"])
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out).step == 4


def test_lgcvd_train_cli_names_a_bad_data_source_in_one_line(tmp_path):
    from click.testing import CliRunner

    from lgcvd_train.cli import main

    result = CliRunner().invoke(main, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "nope" in result.output


def test_lgcvd_train_records_the_command_that_made_its_data(tmp_path):
    from click.testing import CliRunner

    from lgcvd_train.checkpoint import load_checkpoint
    from lgcvd_train.cli import main
    from lgcvd_train.data import shapes
    from lgcvd_train.data.arrays import save_video_stream

    data = tmp_path / "clips.npy"
    made_by = "python tools/make_dataset.py shapes -n 4 -o clips.npy --size 32"
    save_video_stream(data, iter(shapes.generate(4, 16, 32, 0)), 4, command=made_by)
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--data", data, "--steps", 1, "--batch-size", 1, "--out", out]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--quiet"]])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).state["provenance"]["data_command"] == made_by

"""Denoising quality by noise level: the one-step x0 estimate (paper Eq. 7) of checkpoints.

For the first window of each test clip (prediction task: frames 1-2 given, the encoder sees U),
noise the window at fixed timesteps with fixed noise, estimate x0 in one network call and report,
over the new frames, the mean |x0_hat - x0| and the high-frequency energy (mean |vertical pixel
difference|) of x0_hat next to the ground truth's. An estimate that keeps part of the noise shows
as high-frequency energy above the ground truth's; sampled videos then look grainy. It compares
architectures after the same number of steps long before sampling is worth running:

    lgcvd-train --preset small --data data/pushsim_train.npy --out runs/ab-small --steps 150 \\
        --lr 3e-4 --seed 0 --task-weights prediction=0.6,unconditional=0.2,interpolation=0.1,random=0.1
    lgcvd-train --preset base ... --out runs/ab-base   (same options)
    .venv/bin/python research/x0_error.py runs/ab-small runs/ab-base --data data/pushsim_test.npy

Models are run directories (EMA weights) or bundles (weights read back from the graphs). Run on
training clips and on held-out ones, it tells underfitting (the same error) from memorising (a
lower error on the training clips).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from lgcvd_runtime.conditioning import build_condition, denoised_offset, stack_window, to_model
from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train.config import ModelConfig
from lgcvd_train.diffusion import Schedule, estimate_x0
from lgcvd_train.eval_protocol import load_clips
from lgcvd_train.init_weights import init_model, recorded_config

TIMESTEPS = (20, 50, 100, 200, 300, 500, 700, 900)


def high_frequency(x: torch.Tensor) -> float:
    """Mean |vertical neighbour difference| of (..., H, W) images in [-1, 1]."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean().item()


@torch.no_grad()
def x0_errors(
    model, schedule: ScheduleSpec, clips: np.ndarray, seed: int
) -> list[tuple[int, float, float, float]]:
    """-> per timestep (t, mean |x0_hat - x0|, HF(x0_hat), HF(x0)) over the new frames, noised
    with the schedule the model was trained with."""
    cfg = model.cfg
    n, k = cfg.frames, cfg.cond_slots
    window = to_model(clips)[:, :n]  # (C, N, 3, H, W)
    b, _, c, h, w = window.shape
    x0 = torch.from_numpy(stack_window(window))
    given = np.tile(np.arange(k), (b, 1))
    cond = torch.from_numpy(build_condition(window, given, n))
    base = torch.as_tensor(denoised_offset(window, given, cfg.residual))
    prev = torch.zeros_like(x0)  # U: the first window has no previous estimate
    sched = Schedule(schedule)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for step in TIMESTEPS:
        t = torch.full((b,), step)
        eps = torch.randn(x0.shape, generator=gen)
        alpha, sigma = sched.coefficients(t)
        x_t = alpha * (x0 - base) + sigma * eps
        out = model(x_t, t, cond, prev).float()
        x0_hat = estimate_x0(x_t, out, alpha, sigma, cfg.parameterization, offset=base)
        new_hat = x0_hat.view(b, n, c, h, w)[:, k:]
        new_true = x0.view(b, n, c, h, w)[:, k:]
        err = (new_hat - new_true).abs().mean().item()
        rows.append((step, err, high_frequency(new_hat), high_frequency(new_true)))
    return rows


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--data", required=True, help="Test clips (.npy/.npz, folder, or generator).")
@click.option("--clips", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed.")
def main(runs: tuple[Path, ...], data: str, clips: int, seed: int) -> None:
    """Print one-step x0 error and high-frequency energy per timestep for each run or bundle."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for run in runs:
        # the architecture comes from the run or bundle itself; ModelConfig() is never used for
        # the bundles lgcvd-export writes, which record theirs
        model, source = init_model(run, ModelConfig())
        cfg = model.cfg
        frames = load_clips(data, cfg.image_size, clips, cfg.frames, seed=0)
        step = source.get("step", source.get("provenance", {}).get("checkpoint_step"))
        click.echo(f"\n{run}: step {step}, width {cfg.width}, mults {cfg.mults}")
        click.echo("   t   |x0_hat - x0|   HF(x0_hat)   HF(x0)")
        _, schedule = recorded_config(run)
        for step, err, hf_hat, hf_true in x0_errors(model.eval(), schedule, frames, seed):
            click.echo(f"{step:4d}   {err:12.4f}   {hf_hat:10.4f}   {hf_true:6.4f}")


if __name__ == "__main__":
    main()

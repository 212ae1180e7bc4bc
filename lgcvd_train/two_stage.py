"""One iteration of two-stage training (paper §3.3, Fig. 2).

A 14-frame clip is two windows overlapping by K frames. Stage 1 denoises window 1 with ground-truth
conditions and the encoder fed U; its one-step estimate x̂0 (Eq. 7, same noisy step) is detached.
Stage 2 denoises window 2 with the encoder fed x̂0 and, for the prediction task, x̂0's last K frames
as condition frames. Without two-stage training (ablation), stage 2 sees ground truth instead.
A residual model (`ModelConfig.residual`) regresses each window minus the baseline of its own
condition frames (`conditioning.baseline`; stage 2's from its condition, x̂0's frames included).

Batches are drawn without state: the clips, tasks, timesteps and noise of step s on rank r come
from generators seeded by (seed, s, r), so a resumed run repeats an uninterrupted one exactly.
`TwoStageStep.prepare` draws all of that before the step (on a background thread with
`TrainConfig.prefetch`); `TwoStageStep.run` then needs only the network.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from lgcvd_runtime.conditioning import (
    ABSENT,
    build_condition,
    denoised_offset,
    stack_window,
    to_model,
    unknown_window,
)

from .config import ModelConfig, TrainConfig
from .diffusion import Schedule, estimate_x0, noisy_input, target
from .loss_weighting import WeightedLoss

TASKS = ("prediction", "unconditional", "interpolation", "random")

# Task -> condition positions of the K = 2 slots, as in the reference code's training; a
# position below ABSENT counts from the window's end (-2 = its last frame). Training's table:
# serving conditions on whichever frames are known (lgcvd_runtime.pipeline).
TASK_POSITIONS = {
    "prediction": (0, 1),
    "unconditional": (ABSENT, ABSENT),
    "interpolation": (0, -2),
}


def draw_positions(task: str, rng: np.random.Generator, n_frames: int, k: int) -> list[int]:
    """Condition positions of one window for a task; "random" draws K distinct positions from
    -1..N-2 (the reference never draws the last frame)."""
    if task == "random":
        return [int(p) for p in rng.choice(np.arange(ABSENT, n_frames - 1), k, replace=False)]
    return [p if p >= ABSENT else n_frames + p + 1 for p in TASK_POSITIONS[task]]


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up: CUDA, or a CPU with native bf16 in oneDNN
    (AVX512-BF16 / AMX; 1.56x per training pass measured on the 2-core Zen 4 dev machine)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def sample_clips(videos: list[np.ndarray], step: int, rank: int, world: int, cfg: TrainConfig):
    """Clips of step `step` for `rank`: an epoch-wise permutation of the videos split across ranks
    (a distributed sampler without state), a random start and an optional horizontal flip.
    Returns (B, L, 3, H, W) float32 in [-1, 1]."""
    b, n = cfg.batch_size, len(videos)
    clips = []
    for i in range(b):
        pos = (step * world + rank) * b + i
        epoch, j = divmod(pos, n)
        video = videos[np.random.default_rng([cfg.seed, epoch]).permutation(n)[j]]
        rng = np.random.default_rng([cfg.seed, step, rank, i])
        start = int(rng.integers(0, len(video) - cfg.clip_frames + 1))
        clip = video[start : start + cfg.clip_frames]
        if cfg.hflip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        clips.append(clip)
    return to_model(np.stack(clips))


@dataclass
class Batch:
    """Everything of one step that does not depend on the network: drawn from the step's seeds,
    so it can be prepared ahead on another thread (`speed.BatchSource`)."""

    tasks: np.ndarray  # (B,) task names
    w2: np.ndarray  # (B, N, 3, H, W) window 2's frames
    pos2: np.ndarray  # (B, K) stage-2 condition positions
    x1: torch.Tensor  # (B, 3N, H, W) window 1 stacked
    cond1: torch.Tensor
    base1: torch.Tensor | float  # a residual model's baseline of window 1 (stacked), else 0
    prev1: torch.Tensor
    x2: torch.Tensor  # window 2 stacked
    draws: tuple  # ((t, eps) of stage 1, (t, eps) of stage 2)


@dataclass
class StageOutputs:
    loss: float
    loss1: float
    loss2: float
    x0_hat: torch.Tensor  # (B, 3N, H, W) detached stage-1 estimate
    prev2: torch.Tensor  # what the encoder saw in stage 2
    cond2: torch.Tensor  # stage-2 local condition
    out1: torch.Tensor  # stage-1 network output (part of stage 1's graph)


class TwoStageStep:
    """Computes the two stage losses and their gradients (one backward per stage)."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, device: torch.device):
        self.mcfg, self.tcfg, self.device = mcfg, tcfg, device
        self.sched = Schedule(tcfg.schedule, device=device)
        self.loss = WeightedLoss(
            tcfg.loss,
            tcfg.loss_weighting,
            tcfg.snr_gamma,
            tcfg.schedule,
            mcfg.parameterization,
            device,
        )
        names = list(tcfg.task_weights)
        w = np.array([tcfg.task_weights[t] for t in names], dtype=np.float64)
        if set(names) - set(TASKS) or w.sum() <= 0:
            raise ValueError(f"task weights must name tasks from {TASKS} with a positive sum")
        self.task_names, self.task_p = names, w / w.sum()
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if tcfg.amp and bf16_native(device)
            else contextlib.nullcontext
        )
        self.memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        return t.contiguous(memory_format=self.memory_format)

    def _baseline(self, window: np.ndarray, positions: np.ndarray) -> torch.Tensor | float:
        """conditioning.denoised_offset as a tensor (0 for a model that is not residual)."""
        offset = denoised_offset(window, positions, self.mcfg.residual)
        return offset if isinstance(offset, float) else self._tensor(offset)

    def prepare(self, clips: np.ndarray, step: int, rank: int) -> Batch:
        """The step's tasks, condition positions, stage-1 inputs, timesteps and noise.
        clips: (B, L, 3, H, W) in [-1, 1]."""
        n, k = self.mcfg.frames, self.mcfg.cond_slots
        b, _, _, h, w = clips.shape
        rng = np.random.default_rng([self.tcfg.seed, step, rank, 1 << 20])
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        tasks = rng.choice(self.task_names, size=b, p=self.task_p)
        w1, w2 = clips[:, :n], clips[:, n - k : 2 * n - k]  # (B, N, 3, H, W) each
        pos1 = np.array([draw_positions(t, rng, n, k) for t in tasks])
        pos2 = np.array(
            [
                draw_positions(t, rng, n, k) if t == "random" else p
                for t, p in zip(tasks, pos1, strict=True)
            ]
        )
        x1, x2 = self._tensor(stack_window(w1)), self._tensor(stack_window(w2))
        draws = tuple(
            (
                torch.randint(0, self.sched.T, (b,), generator=gen).to(self.device),
                torch.randn(x.shape, generator=gen).to(self.device),
            )
            for x in (x1, x2)
        )
        return Batch(
            tasks=tasks,
            w2=w2,
            pos2=pos2,
            x1=x1,
            cond1=self._tensor(build_condition(w1, pos1, n)),
            base1=self._baseline(w1, pos1),
            prev1=self._tensor(unknown_window(b, n, h, w)),
            x2=x2,
            draws=tuple((t, eps.contiguous(memory_format=self.memory_format)) for t, eps in draws),
        )

    def _stage(self, model, window, base, cond, prev, t, eps):
        """Diffusion loss of one window (of its difference from `base`, for a residual model);
        returns (loss, out, x_t, alpha, sigma)."""
        x0 = window - base
        x_t, (alpha, sigma) = noisy_input(self.sched, x0, t, eps)
        with self.autocast():
            out = model(x_t, t, cond, prev)
        tgt = target(x0, eps, alpha, sigma, self.mcfg.parameterization)
        return self.loss(out, tgt, t), out, x_t, alpha, sigma

    def __call__(self, model, clips: np.ndarray, step: int, rank: int, no_sync=None):
        """clips: (B, L, 3, H, W) in [-1, 1]. Backpropagates both stages; returns StageOutputs."""
        return self.run(model, self.prepare(clips, step, rank), no_sync)

    def second_window(self, batch: Batch, x0_hat: torch.Tensor):
        """Stage 2's (encoder input, local condition, baseline) from stage 1's detached estimate
        x̂0 (B, 3N, H, W): the encoder sees x̂0 (two-stage) or the ground truth of window 1
        (ablation); the prediction task's condition frames are x̂0's last K frames."""
        n, k = self.mcfg.frames, self.mcfg.cond_slots
        b, _, h, w = batch.x1.shape
        src2 = batch.w2.copy()
        if self.tcfg.two_stage:
            prev2 = x0_hat
            x0_frames = x0_hat.reshape(b, n, -1, h, w)[:, n - k :].cpu().numpy()
            pred = batch.tasks == "prediction"
            src2[pred, :k] = x0_frames[pred]
        else:
            prev2 = batch.x1
        cond2 = self._tensor(build_condition(src2, batch.pos2, n))
        return prev2, cond2, self._baseline(src2, batch.pos2)

    def run(self, model, batch: Batch, no_sync=None) -> StageOutputs:
        """Backpropagates both stages of a prepared batch; returns StageOutputs."""
        # Stage 1: ground-truth conditions, encoder sees U.
        with no_sync() if no_sync else contextlib.nullcontext():
            loss1, out1, x_t1, a1, s1 = self._stage(
                model, batch.x1, batch.base1, batch.cond1, batch.prev1, *batch.draws[0]
            )
            (0.5 * loss1).backward()
        x0_hat = estimate_x0(
            x_t1, out1.detach(), a1, s1, self.mcfg.parameterization, offset=batch.base1
        )
        prev2, cond2, base2 = self.second_window(batch, x0_hat)
        loss2, _, _, _, _ = self._stage(model, batch.x2, base2, cond2, prev2, *batch.draws[1])
        (0.5 * loss2).backward()
        return StageOutputs(
            loss=0.5 * (loss1.item() + loss2.item()),
            loss1=loss1.item(),
            loss2=loss2.item(),
            x0_hat=x0_hat,
            prev2=prev2,
            cond2=cond2,
            out1=out1,
        )

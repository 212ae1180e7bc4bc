"""Autoregressive inference over windows: prediction, interpolation, generation (paper §3.2, Fig. 1).

One window of N frames is produced at a time. Its local condition y m holds up to K frames already
known (given or predicted) at their positions; its global context comes from the previous window's
sample x̂ (or U for the first window) through `backend.encode`, exactly once per window. The
denoising loop is `samplers.sample` with `backend.denoise` as the callable.

This module works on float32 arrays in [-1, 1], (S, T, 3, H, W), S = samples run as one batch.
It knows the backend only through the two-method protocol below: the torch reference sampler
(`lgcvd_train.sampler`) and the onnxruntime / TensorRT backends all fit it, so the runtime and the
reference share every line of window and sampler logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .bundle import ModelSpec
from .conditioning import ABSENT, build_condition, stack_window, unknown_window, unstack_window
from .samplers import sample
from .schedule import Plan

CONTEXT_MODES = ("last", "running_mean")


class Backend(Protocol):
    name: str

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        """(B, 3N, H, W) previous window estimate or U -> context tensors."""

    def denoise(self, x_t, t, cond, context: tuple[np.ndarray, ...]) -> np.ndarray:
        """x_t (B, 3N, H, W), t (B,) float32, cond (B, 4K, H, W) -> model output (B, 3N, H, W)."""


@dataclass(frozen=True)
class Window:
    """One finished window: `frames` (S, F, 3, H, W) are video frames start .. start+F-1 that were
    not known before this window."""

    index: int
    start: int
    frames: np.ndarray


@dataclass(frozen=True)
class SamplerSettings:
    plan: Plan
    sampler: str = "ddpm"
    context_mode: str = "last"  # "running_mean": z_k = (E(x̂_{k-1}) + z_{k-1}) / 2, on K/V


class Pipeline:
    """Runs windows on a backend. `rng` provides all noise, so a seed makes a run reproducible."""

    def __init__(self, backend: Backend, spec: ModelSpec, settings: SamplerSettings):
        if settings.context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode must be one of {CONTEXT_MODES}")
        self.backend, self.spec, self.settings = backend, spec, settings
        self.on_step: Callable[[int], None] | None = None

    def _window(self, known: np.ndarray, positions: list[int], context, rng) -> np.ndarray:
        """Sample one window. known: (S, N, 3, H, W) with the frames at `positions` filled in."""
        s, n, c, h, w = known.shape
        cond = build_condition(known, np.tile(positions, (s, 1)), self.spec.frames)
        t_vec = np.empty((s,), dtype=np.float32)

        def denoise(x_t, t):
            t_vec[:] = t
            return self.backend.denoise(x_t, t_vec, cond, context)

        shape = (s, n * c, h, w)
        x_T = rng.standard_normal(shape, dtype=np.float32)
        x0 = sample(
            denoise,
            x_T,
            self.settings.plan,
            self.settings.sampler,
            lambda: rng.standard_normal(shape, dtype=np.float32),
            self.spec.parameterization,
            on_step=self.on_step,
        )
        return unstack_window(x0)  # (S, N, 3, H, W)

    def _context(self, prev: np.ndarray | None, previous_context, samples: int):
        if prev is None:
            h = self.spec.image_size
            prev = unknown_window(samples, self.spec.frames, h, h)
        else:
            prev = stack_window(prev)
        ctx = self.backend.encode(prev)
        if self.settings.context_mode == "running_mean" and previous_context is not None:
            ctx = tuple((a + b) * 0.5 for a, b in zip(ctx, previous_context, strict=True))
        return ctx

    def run(
        self, video: np.ndarray, known: list[bool], rng: np.random.Generator, first_window: int = 0
    ) -> Iterator[Window]:
        """Fill every unknown frame of `video` (S, T, 3, H, W), left to right, window by window.

        `known[i]` says frame i is given. Each window contains the first unknown frame and starts
        at most K frames before it, where it covers the most known frames (the later start on a
        tie, so that a known frame after a gap, as in interpolation, is reached). It conditions on
        the first K known frames it covers and fills the unknown ones.
        """
        spec, video, known = self.spec, video.copy(), list(known)
        n_frames, k = spec.frames, spec.cond_slots
        prev, ctx, index = None, None, first_window
        while not all(known):
            first = known.index(False)
            start = max(
                range(max(0, first - k), first + 1),
                key=lambda s: (sum(known[s : s + n_frames]), s),
            )
            cover = range(start, min(start + n_frames, len(known)))
            positions = [i - start for i in cover if known[i]][:k]
            positions += [ABSENT] * (k - len(positions))
            window = np.zeros((video.shape[0], n_frames, *video.shape[2:]), dtype=np.float32)
            window[:, : len(cover)] = video[:, cover.start : cover.stop]
            ctx = self._context(prev, ctx, video.shape[0])
            x0 = self._window(window, positions, ctx, rng)
            new = [i for i in cover if not known[i]]
            for i in new:
                video[:, i] = x0[:, i - start]
                known[i] = True
            prev = x0
            yield Window(index, new[0], video[:, new[0] : new[-1] + 1].copy())
            index += 1

    def predict(self, given: np.ndarray, n: int, rng: np.random.Generator) -> Iterator[Window]:
        """given: (S, p, 3, H, W) -> windows holding the n frames that follow."""
        s, p = given.shape[:2]
        video = np.zeros((s, p + n, *given.shape[2:]), dtype=np.float32)
        video[:, :p] = given
        return self.run(video, [True] * p + [False] * n, rng)

    def interpolate(self, keyframes: np.ndarray, rng: np.random.Generator) -> Iterator[Window]:
        """keyframes: (S, G+1, 3, H, W), consecutive keyframes N-1 frames apart -> windows holding
        the N-2 frames of each gap (the paper's BAIR setting: 2 given, 6 between)."""
        s, g1 = keyframes.shape[:2]
        step = self.spec.frames - 1
        video = np.zeros((s, (g1 - 1) * step + 1, *keyframes.shape[2:]), dtype=np.float32)
        video[:, ::step] = keyframes
        return self.run(video, [i % step == 0 for i in range(video.shape[1])], rng)

    def generate(self, samples: int, n: int, rng: np.random.Generator) -> Iterator[Window]:
        """Unconditional: n frames from noise alone."""
        h = self.spec.image_size
        video = np.zeros((samples, n, self.spec.channels, h, h), dtype=np.float32)
        return self.run(video, [False] * n, rng)

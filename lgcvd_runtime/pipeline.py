"""Autoregressive inference over windows: prediction, interpolation, generation (paper §3.2, Fig. 1).

One window of N frames is produced at a time, where the `Timeline` puts it. Its local condition
y m holds up to K frames already known (given or predicted) at their positions; its global
context comes from the previous window's sample x̂ (or U for the first window) through
`backend.encode`, exactly once per window. The denoising loop is `samplers.sample` with
`backend.denoise` as the callable. A residual model's sample is added to the window's
`conditioning.baseline` (its x0 estimates clipped so that the frames stay in [-1, 1]). Calls larger
than the bundle's max batch are split into chunks.

Noise belongs to a batch row, not to a call: row r draws x_T and every step's noise from its own
generator `rngs[r]`, so a row's result does not depend on what it was batched with.
`row_generators(seed, samples)` is the one rule that turns a seed into those generators; the API,
the live stream and the Triton server all use it. A seed is a whole number 0 <= seed < 2**63
(`check_seed`): the Triton request carries it as an int64. Every graph output is checked to be
finite.

This module works on float32 arrays in [-1, 1], (B, T, 3, H, W), B = rows run as one batch
(cameras x samples). It knows the backend only through `backends.base.Backend`: the torch
reference (`lgcvd_train.torch_backend`), onnxruntime, TensorRT and Triton all fit it, so every
line of window and sampler logic is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lgcvd_runtime.backends.base import Backend
from lgcvd_runtime.checks import is_whole
from lgcvd_runtime.conditioning import (
    build_condition,
    denoised_offset,
    stack_window,
    unknown_window,
    unstack_window,
)
from lgcvd_runtime.errors import LgcvdError, NonFiniteError, plural
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.plans import DEFAULT_PLAN
from lgcvd_runtime.samplers import sample
from lgcvd_runtime.schedule import Plan
from lgcvd_runtime.timeline import Timeline

SEED_END = 2**63  # seeds are below it: the Triton request's int64 (serve.configs) holds each


def row_generators(seed: int, samples: int) -> list[np.random.Generator]:
    """The noise generators of one clip's `samples` rows. Sample s's generator depends on
    (seed, s) alone: the same whatever the number of samples, cameras or batch position."""
    check_seed(seed)
    children = np.random.SeedSequence(int(seed)).spawn(samples)
    return [np.random.default_rng(child) for child in children]


def clip_seeds(seed, clips: int, rng: np.random.Generator) -> list[int]:
    """One seed per clip: `seed` (an int) for all, one given per clip, or, for None, drawn from
    `rng` (the caller's generator, seeded at load). The library, the live stream and the Triton
    client all follow this rule; each seed is checked by `check_seed`."""
    if seed is None:
        return [int(s) for s in rng.integers(0, SEED_END, size=clips)]
    if not isinstance(seed, (list, tuple, np.ndarray)) or np.ndim(seed) != 1:
        check_seed(seed)  # one seed for all clips
        return [int(seed)] * clips
    seeds = list(seed)
    if len(seeds) != clips:
        raise LgcvdError(
            f"got {plural(len(seeds), 'seed')} for {plural(clips, 'clip')}; give one per clip"
        )
    for one in seeds:
        check_seed(one)
    return [int(one) for one in seeds]


def check_seed(seed) -> None:
    """The seed rule of the library, its command lines and the Triton client: a whole number (int
    or numpy integer, not a bool) 0 <= seed < 2**63, or a one-line error."""
    if not is_whole(seed) or not 0 <= int(seed) < SEED_END:
        raise LgcvdError(
            f"a seed must be a whole number 0 <= seed < 2**63, got {seed!r}; pass one in that range"
        )


@dataclass(frozen=True)
class Window:
    """One finished window: `frames` (B, F, 3, H, W) are video frames start .. start+F-1, from
    its first new frame to its last (known frames between them included, as given)."""

    index: int
    start: int
    frames: np.ndarray


@dataclass(frozen=True)
class SamplerSettings:
    plan: Plan
    sampler: str = DEFAULT_PLAN.sampler


def check_finite(arrays, graph: str, where: str, backend: str) -> None:
    """A NonFiniteError unless every value is finite (about 12 us on a 64x64 window, under 0.01%
    of a denoiser call on a CPU), so that a broken graph never yields frames."""
    for a in arrays:
        if not np.isfinite(a).all():
            raise NonFiniteError(
                f"the {graph} graph returned NaN or Inf {where} on {backend}; the bundle or "
                "engine is broken (fp16 overflow, bad engine, corrupt weights): export it "
                "again or use an fp32 bundle"
            )


class Pipeline:
    """Runs windows on a backend; `max_batch` (None: no limit) splits larger calls."""

    def __init__(
        self,
        backend: Backend,
        spec: ModelSpec,
        settings: SamplerSettings,
        max_batch: int | None = None,
    ):
        self.backend, self.spec, self.settings = backend, spec, settings
        self.max_batch = max_batch
        self.on_step: Callable[[int], None] | None = None

    def _chunks(self, rows: int) -> list[slice]:
        size = self.max_batch or rows
        return [slice(i, min(i + size, rows)) for i in range(0, rows, size)]

    def _encode(self, prev: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
        parts = [self.backend.encode(prev[c]) for c in self._chunks(len(prev))]
        ctx = tuple(
            np.concatenate(ts) if len(parts) > 1 else ts[0] for ts in zip(*parts, strict=True)
        )
        check_finite(ctx, "context", f"in window {window + 1}", self.backend.name)
        return ctx

    def _denoise(self, x_t, t, cond, context, where: str) -> np.ndarray:
        outs = [
            self.backend.denoise(x_t[c], t[c], cond[c], tuple(z[c] for z in context))
            for c in self._chunks(len(x_t))
        ]
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        check_finite((out,), "denoiser", where, self.backend.name)
        return out

    def _window(self, frames, positions, context, rngs, window: int) -> np.ndarray:
        """Sample one window. frames: (B, N, 3, H, W) with the frames at `positions` filled in."""
        b, n, c, h, w = frames.shape
        positions = np.tile(positions, (b, 1))
        cond = build_condition(frames, positions, self.spec.frames)
        offset = denoised_offset(frames, positions, self.spec.residual)
        t_vec = np.empty((b,), dtype=np.float32)
        steps, step = self.settings.plan.steps, [0]

        def denoise(x_t, t):
            t_vec[:] = t
            step[0] += 1
            where = f"at step {step[0]}/{steps} of window {window + 1}"
            return self._denoise(x_t, t_vec, cond, context, where)

        def randn():  # (B, 3N, H, W): row r from rngs[r]
            return np.stack([g.standard_normal((n * c, h, w), dtype=np.float32) for g in rngs])

        x0 = sample(
            denoise,
            randn(),
            self.settings.plan,
            self.settings.sampler,
            randn,
            self.spec.parameterization,
            clip=(-1.0 - offset, 1.0 - offset),  # the window's frames stay in [-1, 1]
            on_step=self.on_step,
        )
        return unstack_window(x0 + offset)  # (B, N, 3, H, W)

    def _context(self, prev: np.ndarray | None, rows: int, window: int):
        if prev is None:
            h = self.spec.image_size
            prev = unknown_window(rows, self.spec.frames, h, h)
        else:
            prev = stack_window(prev)
        return self._encode(prev, window)

    def fill(
        self, timeline: Timeline, rngs: Sequence[np.random.Generator], first_window: int = 0
    ) -> Iterator[Window]:
        """Fill every unknown frame of `timeline` (video (B, T, 3, H, W) float32), window by
        window where its rule puts them; yields each finished window."""
        rows = timeline.video.shape[0]
        if len(rngs) != rows:
            raise ValueError(f"{len(rngs)} generators for {rows} batch rows")
        prev, index = None, first_window
        while (plan := timeline.next_window()) is not None:
            ctx = self._context(prev, rows, index)
            x0 = self._window(timeline.window_frames(plan), plan.positions, ctx, rngs, index)
            timeline.fill(plan, x0)
            prev = x0
            yield Window(index, plan.new[0], timeline.video[:, plan.span].copy())
            index += 1

    def run(
        self,
        video: np.ndarray,
        known: Sequence[bool],
        rngs: Sequence[np.random.Generator],
        first_window: int = 0,
    ) -> Iterator[Window]:
        """Fill the unknown frames of `video` (B, T, 3, H, W); `known[i]`: frame i is given."""
        return self.fill(Timeline(video.copy(), known, self.spec), rngs, first_window)

    def predict(self, given: np.ndarray, n: int, rngs) -> Iterator[Window]:
        """given: (B, p, 3, H, W) -> windows holding the n frames that follow."""
        return self.fill(Timeline.prediction(given, n, self.spec), rngs)

    def interpolate(self, keyframes: np.ndarray, rngs) -> Iterator[Window]:
        """keyframes: (B, G+1, 3, H, W), consecutive keyframes N-1 frames apart -> windows holding
        the N-2 frames of each gap (the paper's BAIR setting: 2 given, 6 between)."""
        return self.fill(Timeline.interpolation(keyframes, self.spec), rngs)

    def generate(self, samples: int, n: int, rngs) -> Iterator[Window]:
        """Unconditional: n frames from noise alone, for `samples` rows."""
        h = self.spec.image_size
        shape = (samples, self.spec.channels, h, h)
        return self.fill(Timeline.generation(shape, n, self.spec), rngs)

"""The embedding API: load a bundle once, then predict, interpolate, generate or stream.

    model = lgcvd_runtime.load("bair.lgcvd")          # its plan, else ddpm 12 trailing
    for window in model.predict(frames, n=28, seed=0):   # frames: (p, H, W, 3) uint8
        use(window.start, window.frames)                 # (samples, F, size, size, 3) uint8
        use(window.times)                                # (F,) seconds; None: period unknown
    for window in model.predict([front, left, right], n=6, seed=[1, 2, 3]):  # three cameras
        use(window.frames)                               # (3, samples, F, size, size, 3)

Everything expensive (manifest check, inference sessions, the sampling plan) happens in `load`;
calls only run windows. The plan (`Model.plan`, `plans.choose`): `sampler`, `steps` and `spacing`
where given, else the plan the bundle records (a distilled student's), else `plans.DEFAULT_PLAN`;
overriding a student's plan warns once, at load (`warnings.warn`, or `load`'s `warn`).
Frames are uint8 RGB; frames of another size are fitted to the model's square as the bundle's
framing says (`Model.framing`: its region, then crop, pad or stretch, `media.resize.fit_frame`),
and `Model.fit_transform` maps a model pixel back. Cameras and samples are rows of one batch; each
row's noise comes from its clip's seed (`pipeline.row_generators`), so a clip's forecast does not
depend on the other cameras. The window logic is `pipeline.Pipeline`; the live stream is
`live.LiveStream`.

Time: a bundle that records its frame period (`Model.period_s`, manifest "framing") gives every
window the times its frames show, in seconds (`framing.frame_times`): the last given frame's
time plus k periods. The given frames' times are `times=` (their last one is the anchor; any
clock, e.g. time.monotonic() or a ROS stamp in seconds); without it the last given frame is at 0,
so made frame k is at k periods. Given frames must be at the model's period: the API takes them
as they come (the CLI resamples recordings by stamp first, `media.source`). A bundle with no
period (format version 1, today's shipped ones) gives `times` None and works by frame index.
This module knows no engine package and no torch.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.backends.base import Backend
from lgcvd_runtime.bundle import Manifest, load_manifest
from lgcvd_runtime.checks import camera_clips, check_count, check_frames, is_whole
from lgcvd_runtime.conditioning import to_model, to_uint8
from lgcvd_runtime.errors import BundleError, LgcvdError
from lgcvd_runtime.framing import frame_times
from lgcvd_runtime.live import LiveStream
from lgcvd_runtime.media.resize import FitTransform, fit_frame, fit_transform
from lgcvd_runtime.ood import Calibration, input_warning, scores_of_clips
from lgcvd_runtime.pipeline import (
    Pipeline,
    SamplerSettings,
    Window,
    check_seed,
    clip_seeds,
    row_generators,
)
from lgcvd_runtime.plans import PlanChoice, checked_choice

ASSETS = Path(__file__).parent / "assets"  # default.lgcvd and demo.mkv, when shipped
Seed = int | Sequence[int] | None  # one for all clips, one per clip, or drawn from the model


@dataclass(frozen=True)
class PredictedWindow:
    """One finished window: `frames` (S, F, H, W, 3) uint8 (one clip) or (C, S, F, H, W, 3) (a
    list of C clips) are video frames start .. start+F-1 for each sample. Indices count from the
    first frame given to the call. `input_score`: how unlike the model's training data the given
    frames look (`ood`; a float, or (C,) for a list of clips), where the bundle is calibrated
    (`Model.calibration`), else None; None for generation. `times`: the time each frame shows,
    in seconds, (F,) or (C, F) (module header); None where the model records no period."""

    index: int
    start: int
    frames: np.ndarray
    input_score: float | np.ndarray | None = None
    times: np.ndarray | None = None


def default_bundle() -> Path:
    """The bundle shipped with the package, or a BundleError saying how to get one."""
    path = ASSETS / "default.lgcvd"
    if not (path / "manifest.json").is_file():
        raise BundleError(
            f"no default model is installed ({path} is missing); "
            "pass a bundle exported with lgcvd-export (--model NAME.lgcvd)"
        )
    return path


class PlanWarning(UserWarning):
    """A run's plan differs from the one its bundle was distilled for (`plans.choose`)."""


class Model:
    """A loaded bundle on one backend with fixed sampler settings. Build it with `load`.
    `plan`: the sampler plan its pipeline runs and where it came from (`plans.PlanChoice`)."""

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        backend: Backend,
        pipeline: Pipeline,
        seed,
        plan: PlanChoice,
    ):
        self.bundle, self.manifest, self.plan = bundle, manifest, plan
        self.backend, self.pipeline = backend, pipeline
        self.rng = np.random.default_rng(seed)  # draws the seeds of calls given none
        self.calibration = Calibration.of(manifest)  # the input score's range, if recorded
        # how frames are fitted: the bundle's fit and region; replace it to fit otherwise
        self.framing = manifest.framing

    @property
    def size(self) -> int:
        """Frame side the model works at (frames are square)."""
        return self.manifest.model.image_size

    @property
    def period_s(self) -> float | None:
        """Seconds between the model's frames (manifest "framing"); None: unknown, by index."""
        return self.manifest.framing.period_s

    def _clock(self, times, anchor_index: int, cameras: int | None) -> _Clock | None:
        """When frame `anchor_index` is, from the given frames' `times` (seconds; None: 0)."""
        if self.period_s is None:
            return None
        if times is None:
            anchor = np.zeros(cameras) if cameras is not None else 0.0
        else:
            given = np.asarray(times, dtype=np.float64)
            if not (given.ndim in (1, 2) and given.shape[-1] > anchor_index):
                raise LgcvdError(
                    f"times has shape {given.shape}; pass one time per given frame, (p,) or (C, p)"
                )
            if not np.all(np.isfinite(given)):
                raise LgcvdError("times must be finite seconds; pass each given frame's time")
            anchor = given[..., anchor_index]
        return _Clock(anchor, anchor_index, self.period_s)

    @property
    def on_step(self) -> Callable[[int], None] | None:
        """Called after each denoising step with the step number (1 .. steps), e.g. for progress."""
        return self.pipeline.on_step

    @on_step.setter
    def on_step(self, callback: Callable[[int], None] | None) -> None:
        self.pipeline.on_step = callback

    def fit(self, frames) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, size, size, 3), fitted as `framing` says; frames of the
        model's size are taken as fitted already (by the caller, or by `fit` itself)."""
        frames = check_frames(frames)
        if frames.shape[1:3] == (self.size, self.size):
            return frames
        return np.stack([fit_frame(f, self.size, self.framing) for f in frames])

    def fit_transform(self, height: int, width: int) -> FitTransform:
        """Where each model pixel of a fitted height x width camera frame lies in that frame."""
        return fit_transform(height, width, self.size, self.framing)

    def clips(self, clips) -> tuple[list[np.ndarray], bool]:
        """Fitted clips (each (T, size, size, 3)) and whether a list of clips was given: a list
        or tuple of (T, H, W, 3) arrays or a (C, T, H, W, 3) array; else one clip; the cameras
        give as many frames (`checks.camera_clips`, the Triton client's check too)."""
        return camera_clips(clips, self.fit)

    def input_score(self, clips, batch: int | None = None) -> float | np.ndarray:
        """The input score (`ood`) of one clip's given frames (a float) or of a list of clips
        ((C,)): one encode and one denoise call (or calls of `batch` windows: a forecast's own
        batch); a calibrated bundle's results carry it."""
        fitted, many = self.clips(clips)
        scores = scores_of_clips(self.backend, self.manifest, np.stack(fitted), batch)
        return scores if many else float(scores[0])

    def input_warning(self, score: float | None) -> str | None:
        """The one-line warning for a score beyond the calibrated range, else None."""
        return input_warning(self.calibration, score)

    def _scorer(self, fitted: list[np.ndarray], many: bool, samples: int):
        """What the results of a call on `fitted` carry: a deferred input score, in calls of
        the forecast's batch, or None."""
        if self.calibration is None:
            return None
        batch = min(len(fitted) * samples, self.manifest.max_batch)
        return lambda: self.input_score(fitted if many else fitted[0], batch)

    def seeds(self, seed: Seed, clips: int) -> list[int]:
        """One seed per clip (`pipeline.clip_seeds`), drawn from the model's rng where none is given."""
        return clip_seeds(seed, clips, self.rng)

    def rows(self, clips: list[np.ndarray], samples: int, seed: Seed):
        """Fitted clips -> the batch (C·S, T, 3, size, size) float32 in [-1, 1], row c·S + s
        for clip c, sample s, and each row's noise generator."""
        check_count("samples", samples)
        rngs = [g for s in self.seeds(seed, len(clips)) for g in row_generators(s, samples)]
        x = to_model(np.stack(clips))  # (C, T, 3, size, size)
        return np.ascontiguousarray(np.repeat(x, samples, axis=0)), rngs

    def predict(
        self, clips, n: int, samples: int = 1, seed: Seed = None, times=None, score: bool = True
    ) -> Iterator[PredictedWindow]:
        """The n frames after each clip's p given frames (p, H, W, 3), window by window; frame p
        is index p. `clips`: one clip, or a list of clips (one per camera, same p, any size).
        `times`: the given frames' times in seconds, (p,) or (C, p) (module header). `score`:
        False skips the input score (its windows carry None; the frames are the same), e.g. to
        save its denoiser call on a few-step plan."""
        check_count("n", n)
        fitted, many = self.clips(clips)
        x, rngs = self.rows(fitted, samples, seed)
        cameras = len(fitted) if many else None
        scorer = self._scorer(fitted, many, samples) if score else None
        clock = self._clock(times, len(fitted[0]) - 1, cameras)
        return _to_uint8(self.pipeline.predict(x, n, rngs), cameras, scorer, clock)

    def interpolate(
        self, keyframes, samples: int = 1, seed: Seed = None, times=None
    ) -> Iterator[PredictedWindow]:
        """Fill the N-2 frames between consecutive keyframes (G+1, H, W, 3), G >= 1; keyframe g
        is frame g (N-1) of the result. A list of such clips: one per camera. `times`: the
        keyframes' times in seconds, of which only the first is used (frame i is i periods
        after it; without it, keyframe 0 is at 0)."""
        fitted, many = self.clips(keyframes)
        if len(fitted[0]) < 2:
            raise LgcvdError(f"interpolation needs at least 2 keyframes, got {len(fitted[0])}")
        x, rngs = self.rows(fitted, samples, seed)
        cameras, score = len(fitted) if many else None, self._scorer(fitted, many, samples)
        clock = self._clock(times, 0, cameras)
        return _to_uint8(self.pipeline.interpolate(x, rngs), cameras, score, clock)

    def generate(self, n: int, samples: int = 1, seed: int | None = None):
        """n frames from noise alone: windows of (S, F, size, size, 3)."""
        check_count("n", n)
        check_count("samples", samples)
        rngs = row_generators(self.seeds(seed, 1)[0], samples)
        return _to_uint8(
            self.pipeline.generate(samples, n, rngs), None, None, self._clock(None, 0, None)
        )

    def stream(self, p: int = 2, n: int | None = None, samples: int = 1) -> Stream:
        """A frame-by-frame forecaster that runs in the caller's thread: see `Stream`."""
        return Stream(self, p, n or self.manifest.model.new_frames, samples)

    def live(
        self,
        p: int = 2,
        n: int | None = None,
        cameras: int = 1,
        samples: int = 1,
        seed: Seed = None,
        *,
        camera_period_s: float | None = None,
        deadline_s: float | None = None,
        clock: Callable[[], float] | None = None,
        score_every: int = 1,
    ) -> LiveStream:
        """A non-blocking forecaster with its own worker thread: see `live.LiveStream`. n
        defaults to one window of new frames; `seed`: one for all cameras or one per camera;
        `camera_period_s`: seconds between the cameras' frames (None: measured as they come),
        by which frames are taken at the model's period; `deadline_s`: a forecast older than
        this is `stale`; `clock`: seconds, the clock of `push` stamps and forecast ages
        (None: time.monotonic); `score_every`: k, each camera's forecasts 1, 1+k, 1+2k, ...
        carry the input score (0: only its first), the others None."""
        return LiveStream(
            self,
            p,
            n or self.manifest.model.new_frames,
            cameras,
            samples,
            seed,
            camera_period_s=camera_period_s,
            deadline_s=deadline_s,
            clock=clock,
            score_every=score_every,
        )

    def close(self) -> None:
        """Free the backend's sessions or engines."""
        self.backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Stream:
    """Keeps the last p pushed frames; once it has p, each push forecasts the n frames after
    the latest p (indices of the returned windows count from the oldest of those p)."""

    def __init__(self, model: Model, p: int, n: int, samples: int = 1):
        check_count("p", p)
        check_count("n", n)
        self.model, self.n, self.samples = model, n, samples
        self._frames: deque[np.ndarray] = deque(maxlen=p)

    def push(self, frame: np.ndarray) -> Iterator[PredictedWindow]:
        """Add one (H, W, 3) uint8 frame now; returns the forecast's windows (lazily, computed
        as the caller consumes them), or nothing while fewer than p frames have arrived."""
        self._frames.append(self.model.fit(np.asarray(frame)[None])[0])
        if len(self._frames) < self._frames.maxlen:
            return iter(())
        return self.model.predict(np.stack(self._frames), self.n, self.samples)


@dataclass(frozen=True)
class _Clock:
    """Frame `anchor_index` is at `anchor` seconds ((C,) per camera); frames are `period` apart."""

    anchor: float | np.ndarray
    anchor_index: int
    period: float

    def times(self, start: int, count: int) -> np.ndarray:
        return frame_times(self.anchor, self.anchor_index, start, count, self.period)


def _to_uint8(
    windows: Iterator[Window],
    cameras: int | None,
    score: Callable[[], object] | None = None,
    clock: _Clock | None = None,
) -> Iterator[PredictedWindow]:
    """Float windows (C·S, F, 3, H, W) -> uint8 (S, F, H, W, 3), or (C, S, ...) for C cameras,
    each with the input score, computed once before the first window, and its frames' times."""
    value = score() if score is not None else None
    for w in windows:
        frames = to_uint8(w.frames)
        if cameras is not None:
            frames = frames.reshape(cameras, -1, *frames.shape[1:])
        times = clock.times(w.start, frames.shape[-4]) if clock is not None else None
        yield PredictedWindow(w.index, w.start, frames, value, times)


def plan_of(
    manifest: Manifest, sampler: str | None, steps: int | None, spacing: str | None = None
) -> PlanChoice:
    """The plan for `manifest` given `sampler`, `steps` and `spacing` (None: not given; module
    header), each given value checked in one line (`plans.checked_choice`)."""
    return checked_choice(sampler, steps, spacing, manifest.plan, manifest.schedule)


def load(
    bundle: str | Path | None = None,
    backend: str = "auto",
    sampler: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
    warn: Callable[[str], None] | None = None,
    spacing: str | None = None,
) -> Model:
    """Load a bundle (None: the default one) on a backend, with a sampler, step count and
    timestep grid (`schedule.SPACINGS`; None: the bundle's plan, else `plans.DEFAULT_PLAN`'s).

    `seed` fixes the seeds of calls that pass none (None: fresh each run); `log` receives
    one-line notes such as the backend `auto` chose; `threads` caps onnxruntime's CPU threads
    (None: one per physical core), e.g. to leave cores to the rest of a robot's stack; `warn`
    receives the one-line warning that a given sampler or steps override the plan the bundle
    was distilled for (None: `warnings.warn` as a `PlanWarning`).
    """
    if seed is not None:
        check_seed(seed)  # a one-line error now, not at the first call
    path = Path(bundle) if bundle is not None else default_bundle()
    manifest = load_manifest(path)
    plan = plan_of(manifest, sampler, steps, spacing)
    settings = SamplerSettings(plan.plan.over(manifest.schedule), plan.plan.sampler)
    if threads is not None and (not is_whole(threads) or threads < 1):
        raise LgcvdError(f"threads must be at least 1, got {threads!r}")
    if plan.warning is not None and warn is not None:
        warn(plan.warning)
    elif plan.warning is not None:
        warnings.warn(plan.warning, PlanWarning, stacklevel=2)
    engine = load_backend(backend, path, manifest, log, threads)
    pipeline = Pipeline(engine, manifest.model, settings, manifest.max_batch)
    return Model(path, manifest, engine, pipeline, seed, plan)

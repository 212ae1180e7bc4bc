"""The embedding API: load a bundle once, then predict, interpolate, generate or stream.

    model = lgcvd_runtime.load("bair.lgcvd", sampler="ddpm", steps=50, seed=0)
    for window in model.predict(frames, n=28):       # frames: (p, H, W, 3) uint8
        use(window.start, window.frames)             # (samples, F, size, size, 3) uint8

Everything expensive (manifest check, inference sessions, the sampling plan) happens in `load`;
calls only run windows. Frames are uint8 RGB; frames of another size are center-cropped and
resampled to the model's (video.center_crop_resize). The window logic is `pipeline.Pipeline`.
This module knows no engine package and no torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import load_backend
from .bundle import Manifest, load_manifest
from .conditioning import to_model, to_uint8
from .errors import BundleError, LgcvdError
from .pipeline import CONTEXT_MODES, Backend, Pipeline, SamplerSettings, Window
from .samplers import SAMPLERS
from .schedule import respace
from .video import center_crop_resize

ASSETS = Path(__file__).parent / "assets"  # default.lgcvd and demo.mkv, when shipped
# Chosen by measurement; the numbers behind it are in docs/results.md (sampler study).
DEFAULT_SAMPLER = "ddpm"
DEFAULT_STEPS = 50


@dataclass(frozen=True)
class PredictedWindow:
    """One finished window: `frames` (S, F, H, W, 3) uint8 are video frames start .. start+F-1,
    for each of the S samples. Indices count from the first frame given to the call."""

    index: int
    start: int
    frames: np.ndarray


def default_bundle() -> Path:
    """The bundle shipped with the package, or a BundleError saying how to get one."""
    path = ASSETS / "default.lgcvd"
    if not (path / "manifest.json").is_file():
        raise BundleError(
            f"no default model is installed ({path} is missing); "
            "pass a bundle exported with lgcvd-export (--model NAME.lgcvd)"
        )
    return path


class Model:
    """A loaded bundle on one backend with fixed sampler settings. Build it with `load`."""

    def __init__(
        self, bundle: Path, manifest: Manifest, backend: Backend, pipeline: Pipeline, seed
    ):
        self.bundle, self.manifest = bundle, manifest
        self.backend, self.pipeline = backend, pipeline
        self.rng = np.random.default_rng(seed)

    @property
    def size(self) -> int:
        """Frame side the model works at (frames are square)."""
        return self.manifest.model.image_size

    @property
    def on_step(self) -> Callable[[int], None] | None:
        """Called after each denoising step with the step number (1 .. steps), e.g. for progress."""
        return self.pipeline.on_step

    @on_step.setter
    def on_step(self, callback: Callable[[int], None] | None) -> None:
        self.pipeline.on_step = callback

    def fit(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, size, size, 3): center-crop and resample where needed."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise LgcvdError(
                f"frames must be uint8 RGB of shape (T, H, W, 3), got {frames.dtype} "
                f"{frames.shape}; convert them first"
            )
        if frames.shape[1:3] == (self.size, self.size):
            return frames
        return np.stack([center_crop_resize(f, self.size) for f in frames])

    def _batch(self, frames: np.ndarray, samples: int) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (S, T, 3, size, size) float32 in [-1, 1]."""
        _check_count("samples", samples, self.manifest.max_batch)
        x = to_model(self.fit(frames))
        return np.ascontiguousarray(np.broadcast_to(x, (samples, *x.shape)))

    def predict(self, frames: np.ndarray, n: int, samples: int = 1) -> Iterator[PredictedWindow]:
        """The n frames after `frames` (p, H, W, 3), window by window; frame p is index p."""
        _check_count("given frames", len(frames))
        _check_count("n", n)
        return _to_uint8(self.pipeline.predict(self._batch(frames, samples), n, self.rng))

    def interpolate(self, keyframes: np.ndarray, samples: int = 1) -> Iterator[PredictedWindow]:
        """Fill the N-2 frames between consecutive keyframes (G+1, H, W, 3), G >= 1; keyframe g
        is frame g (N-1) of the result."""
        if len(keyframes) < 2:
            raise LgcvdError(f"interpolation needs at least 2 keyframes, got {len(keyframes)}")
        return _to_uint8(self.pipeline.interpolate(self._batch(keyframes, samples), self.rng))

    def generate(self, n: int, samples: int = 1) -> Iterator[PredictedWindow]:
        """n frames from noise alone."""
        _check_count("n", n)
        _check_count("samples", samples, self.manifest.max_batch)
        return _to_uint8(self.pipeline.generate(samples, n, self.rng))

    def stream(self, p: int = 2, n: int | None = None, samples: int = 1) -> Stream:
        """A frame-by-frame forecaster: see `Stream`. n defaults to one window of new frames."""
        return Stream(self, p, n or self.manifest.model.new_frames, samples)


class Stream:
    """Keeps the last p pushed frames; once it has p, each push forecasts the n frames after
    the latest p (indices of the returned windows count from the oldest of those p)."""

    def __init__(self, model: Model, p: int, n: int, samples: int = 1):
        _check_count("p", p)
        _check_count("n", n)
        self.model, self.n, self.samples = model, n, samples
        self._frames: deque[np.ndarray] = deque(maxlen=p)

    def push(self, frame: np.ndarray) -> Iterator[PredictedWindow]:
        """Add one (H, W, 3) uint8 frame now; returns the forecast's windows (lazily), or
        nothing while fewer than p frames have arrived."""
        self._frames.append(self.model.fit(np.asarray(frame)[None])[0])
        if len(self._frames) < self._frames.maxlen:
            return iter(())
        return self.model.predict(np.stack(self._frames), self.n, self.samples)


def _check_count(what: str, value: int, most: int | None = None) -> None:
    if value < 1 or (most is not None and value > most):
        upper = f" and at most {most} (the bundle's max batch)" if most is not None else ""
        raise LgcvdError(f"{what} must be at least 1{upper}, got {value}")


def _to_uint8(windows: Iterator[Window]) -> Iterator[PredictedWindow]:
    for w in windows:
        yield PredictedWindow(w.index, w.start, to_uint8(w.frames))


def load(
    bundle: str | Path | None = None,
    backend: str = "auto",
    sampler: str = DEFAULT_SAMPLER,
    steps: int = DEFAULT_STEPS,
    seed: int | None = None,
    context_mode: str = "last",
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> Model:
    """Load a bundle (None: the default one) on a backend, with a sampler and step count.

    `seed` fixes all noise (None: fresh each run); `log` receives one-line notes such as the
    backend `auto` chose; `threads` caps onnxruntime's CPU threads (None: one per physical
    core), e.g. to leave cores to the rest of a robot's stack.
    """
    if sampler not in SAMPLERS:
        raise LgcvdError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if context_mode not in CONTEXT_MODES:
        raise LgcvdError(
            f"unknown context mode {context_mode!r}; choose one of {', '.join(CONTEXT_MODES)}"
        )
    path = Path(bundle) if bundle is not None else default_bundle()
    manifest = load_manifest(path)
    total = manifest.schedule.T
    if not 1 <= steps <= total:
        raise LgcvdError(f"steps must be in 1..{total} (the schedule's T), got {steps}")
    settings = SamplerSettings(respace(manifest.schedule, steps), sampler, context_mode)
    if threads is not None and threads < 1:
        raise LgcvdError(f"threads must be at least 1, got {threads}")
    engine = load_backend(backend, path, manifest, log, threads)
    return Model(path, manifest, engine, Pipeline(engine, manifest.model, settings), seed)

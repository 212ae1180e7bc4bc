"""When a forecast should not be trusted: the model's own denoising error on the given frames.

A diffusion model reconstructs a noised input well only where its training data lay. The score:
make each of the last K given frames a still window (the frame N times; a window of the given
frames in order scored moving inputs, e.g. interpolation keyframes, as strange), noise it at the
fixed timestep `T_SCORE` with fixed noise (seed `NOISE_SEED`, the same for every input, so the
score is a deterministic function of the frames), ask the denoiser for x̂0 (paper Eq. 7) with no
condition frames and the context of U (no previous window), and report the mean |x̂0 - x0| in
grey levels (0-255). That is one `encode` and one `denoise` call per score (a batch of K
windows), whatever the task. Measurements behind these choices: docs/ood.md.

Calibration (`calibrate`) records percentiles of the score over held-out clips of the training
distribution in the bundle manifest (key "ood"); `Calibration.warning` turns a score above the
99th percentile into the one-line warning lgcvd-run prints. A calibration made for another score
definition (another `SCORE` name) is ignored, never compared.

`calibration_clips` reads the clips of a data path for a bundle (an array, a video, a folder
of videos, a bag's camera topic; `media.recordings`): lgcvd-run calibrate and lgcvd-export
--calibrate read them alike. This module works through the pipeline's backend protocol only; it
knows no engine package and no torch, and scores frames however they were read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.backends.base import Backend
from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.conditioning import (
    ABSENT,
    build_condition,
    stack_window,
    to_model,
    unknown_window,
)
from lgcvd_runtime.errors import BundleError, LgcvdError
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.portable import portable_record
from lgcvd_runtime.samplers import x0_eps_from_output
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod

# Names this exact definition; change it whenever the definition changes.
SCORE = "x0-error-still-t300"
T_SCORE = 300  # timestep of the one denoiser call (original grid, 0..T-1)
NOISE_SEED = 0
GREY = 127.5  # model units ([-1, 1]) -> grey levels
PERCENTILES = (50, 95, 99)
THRESHOLD = 99  # the percentile above which an input is flagged
CALIBRATION_GIVEN = 2  # given frames per calibration input: lgcvd-run predict's default -p


def score_windows(given: np.ndarray, n_frames: int, k: int) -> np.ndarray:
    """(B, p, 3, H, W) given frames -> (B·F, N, 3, H, W): each of the last F = min(p, K) frames
    as a still window (the frame N times), so that the score does not depend on the task's
    layout or the motion between given frames, only on what they show."""
    last = given[:, -k:]  # (B, F, 3, H, W)
    b, f = last.shape[:2]
    return np.repeat(last.reshape(b * f, 1, *last.shape[2:]), n_frames, axis=1)


def ood_scores(
    backend: Backend,
    spec: ModelSpec,
    schedule: ScheduleSpec,
    given: np.ndarray,
    batch: int | None = None,
) -> np.ndarray:
    """The score of each clip of `given` (B, p, 3, H, W) float32 in [-1, 1]: the mean over its
    last min(p, K) frames of the one-step reconstruction error. -> (B,) float64.

    One backend.encode and one backend.denoise call on the batch of B·min(p, K) windows (at most
    the bundle's max batch; `scores_of_clips` chunks larger sets), or, with `batch`, calls of
    exactly `batch` windows, the last one padded: a forecast scores its input in calls of its
    own batch, so the engine meets no second input shape (a second shape made onnxruntime plan
    and keep a second set of buffers: 18 MB more peak memory, docs/results.md)."""
    if given.ndim != 5 or given.shape[1] < 1:
        raise LgcvdError(f"the score needs at least one given frame, got shape {given.shape}")
    n = spec.frames
    window = score_windows(given, n, spec.cond_slots)  # (B·F, N, 3, H, W)
    bf = len(window)
    x0 = stack_window(window)  # (B·F, 3N, H, W)
    cond = build_condition(window, np.full((bf, spec.cond_slots), ABSENT), n)  # no given frames
    ab = float(full_alphas_cumprod(schedule)[T_SCORE])
    alpha, sigma = math.sqrt(ab), math.sqrt(1.0 - ab)
    eps = np.random.default_rng(NOISE_SEED).standard_normal(x0.shape[1:], dtype=np.float32)
    x_t = alpha * x0 + sigma * eps  # Eq. 3, the same eps for every window
    out = _denoise_in_calls(backend, spec, x_t, cond, batch or bf)
    x0_hat, _ = x0_eps_from_output(x_t, out, alpha, sigma, spec.parameterization)
    err = np.abs(x0_hat.clip(-1.0, 1.0) - x0)  # (B·F, 3N, H, W)
    return err.reshape(len(given), -1).mean(axis=1, dtype=np.float64) * GREY


def _denoise_in_calls(
    backend: Backend, spec: ModelSpec, x_t: np.ndarray, cond: np.ndarray, batch: int
) -> np.ndarray:
    """The denoiser's output at T_SCORE for windows (W, 3N, H, W), with no previous window, in
    calls of `batch` windows; a short last call is padded with copies of its last window."""
    n, h = spec.frames, spec.image_size
    context = backend.encode(unknown_window(batch, n, h, h))
    t = np.full((batch,), T_SCORE, dtype=np.float32)
    outs = []
    for i in range(0, len(x_t), batch):
        rows = np.minimum(np.arange(i, i + batch), len(x_t) - 1)  # pads with the last window
        outs.append(backend.denoise(x_t[rows], t, cond[rows], context)[: len(x_t) - i])
    return np.concatenate(outs)


def calibration_length(n_frames: int) -> int:
    """Frames of a calibration clip cut from a longer recording: 2(N-1), so that the clips'
    inputs (from every (N-1)-th frame of each) are the whole recording's."""
    return 2 * (n_frames - 1)


def calibration_clips(
    data: Path, manifest: Manifest, topic: str | None, log: Callable[[str], None] | None
) -> list[np.ndarray]:
    """The clips of `data` (`media.recordings.data_clips`; a bag's camera `topic`) that
    calibrate the bundle of `manifest`: fitted as its framing says, at its period, recordings cut
    into clips of `calibration_length` frames. `log` gets the readers' notes."""
    from lgcvd_runtime.media.recordings import data_clips  # PyAV: training imports this module

    return data_clips(
        data,
        manifest.model.image_size,
        calibration_length(manifest.model.frames),
        least=CALIBRATION_GIVEN,
        topic=topic,
        framing=manifest.framing,
        log=log,
    )


def calibration_starts(clip_frames: int, n_frames: int) -> range:
    """First frames of the calibration inputs of a clip: every (N-1)-th frame that leaves room."""
    return range(0, clip_frames - CALIBRATION_GIVEN + 1, n_frames - 1)


def calibration_inputs(clips: np.ndarray, n_frames: int) -> np.ndarray:
    """(C, T, H, W, 3) clips -> (C·S, CALIBRATION_GIVEN, H, W, 3): the given frames of an input
    starting at every (N-1)-th frame (0, 7, 14, ... for N = 8), clip-major, so that calibration
    sees what each part of a clip shows, not only its first frames."""
    if clips.ndim != 5 or clips.shape[1] < CALIBRATION_GIVEN:
        raise LgcvdError(
            f"calibration clips must be (C, T, H, W, 3) with T >= {CALIBRATION_GIVEN}, got "
            f"{clips.shape}"
        )
    starts = calibration_starts(clips.shape[1], n_frames)
    inputs = np.stack([clips[:, s : s + CALIBRATION_GIVEN] for s in starts], axis=1)
    return inputs.reshape(-1, *inputs.shape[2:])


def scores_of_clips(
    backend: Backend, manifest: Manifest, inputs: np.ndarray, batch: int | None = None
) -> np.ndarray:
    """Scores of inputs (C, p, H, W, 3) uint8 at the model's size (p given frames each), in
    batches that fit the bundle's max batch, or in calls of `batch` windows (`ood_scores`).
    -> (C,)."""
    size = manifest.model.image_size
    if inputs.ndim != 5 or inputs.shape[2:] != (size, size, 3) or inputs.dtype != np.uint8:
        raise LgcvdError(
            f"clips must be uint8 (C, T, {size}, {size}, 3) at the model's size, got "
            f"{inputs.dtype} {inputs.shape}; resize them first"
        )
    step = max(1, manifest.max_batch // min(inputs.shape[1], manifest.model.cond_slots))
    parts = [
        ood_scores(
            backend, manifest.model, manifest.schedule, to_model(inputs[i : i + step]), batch
        )
        for i in range(0, len(inputs), step)
    ]
    return np.concatenate(parts)


def calibrate(
    bundle: Path,
    manifest: Manifest,
    clips,
    data: str,
    data_command: str | None = None,
    threads: int | None = None,
    held_out: bool = True,
) -> dict[str, object]:
    """The manifest's "ood" record of `bundle` (its graphs on onnxruntime's CPU provider) from
    held-out clips of the training distribution, uint8 (C, T, H, W, 3) or a list of C clips
    (T, H, W, 3) of any lengths; `data` (and the command that made it, if known) says where
    they came from, its paths `portable`; `held_out` False: they are training clips."""
    if len(clips) < 20:
        raise LgcvdError(
            f"calibration needs at least 20 held-out clips for a 99th percentile, got {len(clips)}"
        )
    n = manifest.model.frames
    inputs = np.concatenate([calibration_inputs(np.asarray(clip)[None], n) for clip in clips])
    backend = load_backend("onnxruntime", bundle, manifest, None, threads)
    try:
        scores = scores_of_clips(backend, manifest, inputs)
    finally:
        backend.close()
    values = np.percentile(scores, PERCENTILES)
    record: dict[str, object] = {
        "score": SCORE,
        "percentiles": {
            str(p): round(float(v), 4) for p, v in zip(PERCENTILES, values, strict=True)
        },
        "clips": len(clips),
        "inputs": len(inputs),  # CALIBRATION_GIVEN frames each, from every (N-1)-th frame
        "given": CALIBRATION_GIVEN,
        "data": data,
        **({} if held_out else {"held_out": False}),
    }
    if data_command is not None:
        record["data_command"] = data_command
    return portable_record(record)  # the bundle travels: no path of this machine


@dataclass(frozen=True)
class Calibration:
    """The calibrated range of a bundle's score (its manifest's "ood" record)."""

    percentiles: dict[str, float]
    clips: int

    @classmethod
    def of(cls, manifest: Manifest) -> Calibration | None:
        """The bundle's calibration, or None if it has none for this module's SCORE."""
        return cls.of_record(manifest.ood)

    @classmethod
    def of_record(cls, record) -> Calibration | None:
        """A manifest's "ood" record (as `calibrate` wrote it, or as a Triton server passes it
        on) as a calibration; None if it is absent or made for another score definition."""
        if not isinstance(record, dict) or record.get("score") != SCORE:
            return None
        try:
            percentiles = {str(k): float(v) for k, v in record["percentiles"].items()}
            if str(THRESHOLD) not in percentiles:
                raise KeyError(f"no {THRESHOLD}th percentile")
            return cls(percentiles, int(record["clips"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BundleError(
                f"the manifest's ood calibration is corrupt ({type(e).__name__}: {e}); calibrate "
                "the bundle again with lgcvd-run calibrate BUNDLE --data CLIPS --force"
            ) from None

    @property
    def threshold(self) -> float:
        return self.percentiles[str(THRESHOLD)]

    def warning(self, score: float) -> str | None:
        """The one-line warning for a score beyond the calibrated range, else None."""
        if score <= self.threshold:
            return None
        return (
            f"input looks unlike this model's training data: score {score:.1f}, "
            f"{THRESHOLD}th percentile {self.threshold:.1f}"
        )


def input_warning(calibration: Calibration | None, score: float | None) -> str | None:
    """The one-line warning for `score` beyond `calibration`'s range; None without a score or a
    calibration (the library's `Model` and the Triton client both word it here)."""
    if score is None or calibration is None:
        return None
    return calibration.warning(score)

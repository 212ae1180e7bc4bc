"""The parity gate: onnxruntime (CPU) against the torch model, before a bundle is written.

Both graphs run on random inputs and on real frames (the four real BAIR clips by default, or
the first clips of any video array, area-resized to the model's size; random frames stand in
when the file is absent), the denoiser at t near 0, the
middle and near T. Each graph gets the torch context, so an error is attributed to one graph.
Relative error of a check = max over the graph's outputs of max|onnx - torch| / max|torch|.
A check passes when it is finite (onnx and torch) and within TOLERANCE[precision].
Knows nothing about files other than the graphs and the clips it is given.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from lgcvd_runtime.conditioning import build_condition, denoised_offset, stack_window, to_model
from lgcvd_runtime.errors import DataError, LgcvdError, plural
from lgcvd_runtime.media.arrays import load_videos
from lgcvd_runtime.samplers import q_sample
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod
from lgcvd_train.data.arrays import crop_and_resize
from lgcvd_train.model import LGCVD

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.5}  # int8: see docs/precision.md
REAL_KEY = "ground_truth"  # (clips, T, H, W, 3) uint8
REAL_CLIPS = 4
RANDOM_BATCH = 2


class ParityError(LgcvdError):
    """The exported graphs do not reproduce the torch model within tolerance."""


@dataclass(frozen=True)
class Check:
    graph: str
    inputs: str  # "random" | "real"
    t: int | None  # denoiser timestep; None for the context graph
    rel_err: float
    finite: bool
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.finite and self.rel_err <= self.tolerance


def relative_error(onnx_out: list[np.ndarray], torch_out: list[np.ndarray]) -> float:
    return max(
        float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
        for a, b in zip(onnx_out, torch_out, strict=True)
    )


def load_real_clips(path: Path, frames: int, size: int, count: int = REAL_CLIPS) -> np.ndarray:
    """Up to `count` clips of `frames` frames for a gate, (B, frames, size, size, 3) uint8:
    the 'ground_truth' array of the real BAIR npz, or any video array lgcvd-train reads."""
    videos = None
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if REAL_KEY in archive.files:
                    videos = archive[REAL_KEY]
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # not readable: load_videos says so in one line
    if videos is None:
        videos = load_videos(path)
    if videos.shape[1] < frames:
        raise DataError(
            f"{path} holds clips of {plural(videos.shape[1], 'frame')}; the gate needs {frames} "
            "(one window): pass longer clips to --real-frames"
        )
    return np.stack([crop_and_resize(clip[:frames], size) for clip in videos[:count]])


def frame_sets(model: LGCVD, real_frames: Path | None, rng) -> dict[str, tuple]:
    """ "random" and "real" -> (prev, window), each (B, N, 3, H, W) in [-1, 1]."""
    cfg = model.cfg
    n, s = cfg.frames, cfg.image_size
    sets = {"random": tuple(rng.uniform(-1, 1, (2, RANDOM_BATCH, n, 3, s, s)).astype(np.float32))}
    if real_frames is not None and Path(real_frames).is_file():
        clips = to_model(load_real_clips(Path(real_frames), 2 * n, s))  # (B, 2N, 3, s, s)
        sets["real"] = (clips[:, :n], clips[:, n:])
    return sets


class Sessions:
    """onnxruntime CPU sessions of the bundle's graphs, run with named numpy inputs."""

    def __init__(self, directory: Path, names):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sessions = {
            g: ort.InferenceSession(
                str(directory / f"{g}.onnx"), opts, providers=["CPUExecutionProvider"]
            )
            for g in names
        }

    def run(self, graph: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        s = self.sessions[graph]
        return s.run(None, {i.name: a for i, a in zip(s.get_inputs(), arrays, strict=True)})


def check_parity(
    model: LGCVD,
    directory: Path,
    precision: str,
    schedule: ScheduleSpec,
    real_frames: Path | None,
) -> list[Check]:
    """Run every check of the gate on the graphs in `directory`; return them all."""
    names = [g for g in ("context", "denoiser") if (directory / f"{g}.onnx").is_file()]
    onnx_graphs = Sessions(directory, names)
    tol = TOLERANCE[precision]
    rng = np.random.default_rng(0)
    checks = []
    for kind, (prev, window) in frame_sets(model, real_frames, rng).items():
        prev = stack_window(prev)  # (B, 3N, H, W)
        with torch.no_grad():
            ctx = [c.numpy() for c in model.context(torch.from_numpy(prev))]
        if ctx:
            got = onnx_graphs.run("context", [prev])
            checks.append(Check("context", kind, None, relative_error(got, ctx), finite(got), tol))
        checks += denoiser_checks(model, onnx_graphs, kind, window, ctx, schedule, tol, rng)
    return checks


def denoiser_checks(
    model: LGCVD,
    onnx_graphs: Sessions,
    kind: str,
    window: np.ndarray,  # (B, N, 3, H, W)
    ctx: list[np.ndarray],
    schedule: ScheduleSpec,
    tol: float,
    rng: np.random.Generator,
) -> list[Check]:
    """The denoiser on x_t = q_sample(window) at t near 0, the middle and near T."""
    abar = full_alphas_cumprod(schedule)
    positions = np.tile(np.arange(model.cfg.cond_slots), (len(window), 1))
    cond = build_condition(window, positions, model.cfg.frames)  # (B, 4K, H, W)
    # what the network denoises (B, 3N, H, W): the window, less a residual model's baseline
    x0 = stack_window(window) - denoised_offset(window, positions, model.cfg.residual)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    checks = []
    for t in (5, schedule.T // 2, schedule.T - 5):
        a, s = float(np.sqrt(abar[t])), float(np.sqrt(1.0 - abar[t]))
        inputs = [q_sample(x0, eps, a, s).astype(np.float32), np.full(len(x0), t, np.float32), cond]
        with torch.no_grad():
            ref = model.denoise(
                *(torch.from_numpy(x) for x in inputs), tuple(torch.from_numpy(c) for c in ctx)
            ).numpy()
        got = onnx_graphs.run("denoiser", [*inputs, *ctx])
        ok = finite(got) and bool(np.isfinite(ref).all())
        checks.append(Check("denoiser", kind, t, relative_error(got, [ref]), ok, tol))
    return checks


def finite(arrays: list[np.ndarray]) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


def format_table(checks: list[Check]) -> str:
    lines = [f"{'graph':<9} {'inputs':<7} {'t':>4}  {'rel. error':>10}  {'limit':>7}  result"]
    for c in checks:
        t = "-" if c.t is None else str(c.t)
        result = "ok" if c.ok else ("NOT FINITE" if not c.finite else "FAIL")
        lines.append(
            f"{c.graph:<9} {c.inputs:<7} {t:>4}  {c.rel_err:10.2e}  {c.tolerance:7.0e}  {result}"
        )
    return "\n".join(lines)


def require_parity(checks: list[Check]) -> None:
    """Raise `ParityError` (one line) unless every check passed."""
    failed = [c for c in checks if not c.ok]
    if failed:
        worst = max(c.rel_err for c in failed)
        raise ParityError(
            f"parity gate failed: {len(failed)} of {len(checks)} checks exceed "
            f"{failed[0].tolerance:.0e} or are not finite (worst {worst:.2e}, table above); "
            "no bundle written: check the checkpoint, or try another --opset or precision"
        )

"""The int8 export: calibration along real trajectories, Q/DQ graphs, and the end-to-end gate.

Per-call parity (parity.py) cannot see errors that only build up over a sampler's steps and a
video's windows, so an int8 bundle must also predict like the fp32 export it came from: both run
the runtime's `Pipeline` on the same held-out real clips with the same seed (given p frames,
predict n), and the predicted frames of the int8 graphs are compared with those of the fp32
graphs by PSNR and SSIM. Below `GateTolerance` the export stops and no bundle is written.
Also reported: each one's PSNR / SSIM against the real frames, so a loss is seen in context.
Knows nothing about files other than the graphs in the folder it is given and the clips.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.conditioning import to_model, to_uint8
from lgcvd_runtime.errors import DataError, LgcvdError
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.plans import FAST_PLAN
from lgcvd_runtime.schedule import ScheduleSpec, respace
from lgcvd_train.metrics import psnr, ssim

from . import quantize
from .options import GateTolerance
from .parity import Sessions, load_real_clips

SAMPLER, STEPS, SEED = FAST_PLAN.sampler, FAST_PLAN.steps, 0  # one plan for int8 and fp32
GIVEN, PREDICTED = 2, 12  # two windows: the second one's context comes from a prediction


class QualityGateError(LgcvdError):
    """The int8 graphs' predictions differ from the fp32 export's beyond the tolerance."""


@dataclass(frozen=True)
class GateResult:
    psnr: float  # int8 vs fp32 predictions, mean over clips and frames
    ssim: float
    truth: dict  # "fp32" / "int8" -> (PSNR, SSIM) against the real frames
    clips: int
    tolerance: GateTolerance

    @property
    def ok(self) -> bool:
        return self.psnr >= self.tolerance.min_psnr and self.ssim >= self.tolerance.min_ssim


def mean_scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean PSNR and SSIM over clips and frames; a, b: (S, F, 3, H, W) in [-1, 1]."""
    pairs = [(to_uint8(x), to_uint8(y)) for x, y in zip(a, b, strict=True)]
    p = np.concatenate([psnr(x, y) for x, y in pairs])
    s = np.concatenate([ssim(x, y) for x, y in pairs])
    return float(p.mean()), float(s.mean())


def quantize_graphs(
    directory: Path,
    names: list[str],
    spec: ModelSpec,
    schedule: ScheduleSpec,
    calib_frames: Path,
    calib_clips: int,
    float_ops: str,
) -> Path:
    """Replace the fp32 graphs in `directory` by int8 ones; return the folder the fp32 graphs
    were moved to (inside `directory`, for the gate; the caller removes it)."""
    fp32 = directory / "fp32"
    fp32.mkdir()
    for name in names:
        shutil.move(directory / f"{name}.onnx", fp32 / f"{name}.onnx")
    clips = to_model(load_real_clips(calib_frames, GIVEN + PREDICTED, spec.image_size, calib_clips))
    recorder = quantize.GraphRunner(Sessions(fp32, names), record=True)
    quantize.predict(
        recorder, spec, respace(schedule, STEPS), SAMPLER, clips, GIVEN, PREDICTED, SEED
    )
    for name in names:
        quantize.to_int8(
            fp32 / f"{name}.onnx", directory / f"{name}.onnx", recorder.feeds[name], float_ops
        )
    return fp32


def end_to_end(
    directory: Path,
    fp32: Path,
    names: list[str],
    spec: ModelSpec,
    schedule: ScheduleSpec,
    gate_frames: Path,
    gate_clips: int,
    tolerance: GateTolerance,
) -> GateResult:
    """Predictions of the int8 graphs in `directory` and the fp32 ones in `fp32`, compared."""
    clips = to_model(load_real_clips(gate_frames, GIVEN + PREDICTED, spec.image_size, gate_clips))
    plan = respace(schedule, STEPS)
    out = {
        label: quantize.predict(
            quantize.GraphRunner(Sessions(folder, names)),
            spec,
            plan,
            SAMPLER,
            clips,
            GIVEN,
            PREDICTED,
            SEED,
        )
        for label, folder in (("fp32", fp32), ("int8", directory))
    }
    real = clips[:, GIVEN:]
    truth = {label: mean_scores(pred, real) for label, pred in out.items()}
    agree = mean_scores(out["int8"], out["fp32"])
    return GateResult(agree[0], agree[1], truth, len(clips), tolerance)


def format_gate(r: GateResult) -> str:
    t = r.tolerance
    verdict = "ok" if r.ok else "FAIL"
    return "\n".join(
        [
            f"end-to-end gate: {r.clips} held-out clips, {GIVEN} given -> {PREDICTED} predicted, "
            f"{SAMPLER} {STEPS} steps, seed {SEED}",
            f"{'':<22} {'PSNR dB':>8} {'SSIM':>7}",
            f"{'int8 vs fp32':<22} {r.psnr:8.2f} {r.ssim:7.4f}  limit >= {t.min_psnr:g} / "
            f">= {t.min_ssim:g}  {verdict}",
            f"{'fp32 vs real frames':<22} {r.truth['fp32'][0]:8.2f} {r.truth['fp32'][1]:7.4f}",
            f"{'int8 vs real frames':<22} {r.truth['int8'][0]:8.2f} {r.truth['int8'][1]:7.4f}",
        ]
    )


def require_gate(r: GateResult) -> None:
    if not r.ok:
        raise QualityGateError(
            f"int8 quality gate failed: predictions differ from the fp32 export's (PSNR "
            f"{r.psnr:.2f} dB, SSIM {r.ssim:.4f}; limits {r.tolerance.min_psnr:g} dB, "
            f"{r.tolerance.min_ssim:g}; table above); no bundle written: calibrate on "
            "the training clips (--calib-frames), or export --fp16"
        )


def int8_export(
    directory: Path, names, spec, schedule, opts, echo: Callable[[str], None]
) -> GateResult:
    """Quantize the fp32 graphs in `directory` in place and gate them; raise if the gate fails.
    Calibration and gate clips default to the parity gate's real frames."""
    calib, held_out = opts.calib_frames or opts.real_frames, opts.gate_frames or opts.real_frames
    for what, path in (("calibration", calib), ("gate", held_out)):
        if path is None or not Path(path).is_file():
            raise DataError(
                f"int8 export needs real clips for its {what} ({path} not found); pass "
                f"--{'calib' if what == 'calibration' else 'gate'}-frames FILE"
            )
    fp32 = quantize_graphs(
        directory, names, spec, schedule, Path(calib), opts.calib_clips, quantize.DEFAULT_FLOAT_OPS
    )
    try:
        result = end_to_end(
            directory, fp32, names, spec, schedule, Path(held_out), opts.gate_clips, opts.gate
        )
    finally:
        shutil.rmtree(fp32)
    echo(format_gate(result))
    require_gate(result)
    return result

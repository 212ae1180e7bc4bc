"""The options of one export (`lgcvd-export`'s flags and their defaults), torch- and onnx-free
so that the command line shows them before the heavy modules load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GateTolerance:
    min_psnr: float = 30.0  # dB, int8 prediction against the fp32 prediction
    min_ssim: float = 0.95


@dataclass(frozen=True)
class ExportOptions:
    precision: str = "fp32"  # "fp32" | "fp16" | "int8"
    max_batch: int = 8  # largest batch the runtime (and TensorRT profiles) accept
    opset: int = 17
    tensorrt: bool = False  # also build this machine's TensorRT engines
    force: bool = False  # replace an existing bundle
    real_frames: Path | None = None  # clips for the parity gate; random frames when absent
    cuda_graph: bool = False  # with tensorrt: check and enable CUDA-graph replay of the denoiser
    calib_frames: Path | None = None  # int8 calibration clips (training clips); None: real_frames
    calib_clips: int = 8
    gate_frames: Path | None = None  # held-out clips of the int8 end-to-end gate; None: real_frames
    gate_clips: int = 8
    gate: GateTolerance = GateTolerance()
    calibrate: Path | None = None  # held-out clips: record the input score's calibration
    calibrate_topic: str | None = None  # the camera of a bag that calibrates

"""The options of one export (`lgcvd-export`'s flags and their defaults) and the named int8
choices, torch- and onnx-free so that the command line shows them before the heavy modules load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# int8 (export/quantize.py): which parts of a graph stay in float, by name; the measurements
# behind the choices are in docs/precision.md.
WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CONVS = ("Conv", "ConvTranspose")
NORMS_SOFTMAX = (
    "InstanceNormalization",
    "GroupNormalization",
    "LayerNormalization",
    "ReduceMean",
    "Softmax",
)


@dataclass(frozen=True)
class FloatChoice:
    """Which parts of a graph stay in float."""

    quantized: tuple[str, ...] | None  # op types quantized; None: all onnxruntime can
    float_ops: tuple[str, ...] = ()  # op types kept in float among those
    time_embedding: bool = False  # keep t -> sin/cos in float (t reaches ~1000)
    io_convs: bool = False  # keep the first conv (reads x_t) and the output conv in float
    outputs: bool = True  # False: Q/DQ only on the inputs of quantized ops, none on outputs
    percentile: float | None = None  # activation range: this percentile of |x|; None: min/max


FLOAT_OPS = {
    "none": FloatChoice(None),
    "sensitive": FloatChoice(None, NORMS_SOFTMAX + ("Sin", "Cos"), time_embedding=True),
    "weighted": FloatChoice(WEIGHTED, time_embedding=True, outputs=False),
    "weighted-io": FloatChoice(WEIGHTED, time_embedding=True, io_convs=True, outputs=False),
    "conv-io": FloatChoice(CONVS, time_embedding=True, io_convs=True, outputs=False),
    "weighted-io-p9999": FloatChoice(
        WEIGHTED, time_embedding=True, io_convs=True, outputs=False, percentile=99.99
    ),
    "weighted-io-p999": FloatChoice(
        WEIGHTED, time_embedding=True, io_convs=True, outputs=False, percentile=99.9
    ),
}
DEFAULT_FLOAT_OPS = "weighted-io-p9999"


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
    int8_float_ops: str = DEFAULT_FLOAT_OPS  # which ops an int8 bundle keeps in float
    calib_frames: Path | None = None  # int8 calibration clips (training clips); None: real_frames
    calib_clips: int = 8
    gate_frames: Path | None = None  # held-out clips of the int8 end-to-end gate; None: real_frames
    gate_clips: int = 8
    gate: GateTolerance = GateTolerance()
    calibrate: Path | None = None  # held-out clips: record the input score's calibration

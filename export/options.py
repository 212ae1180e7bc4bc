"""The options of one export (`lgcvd-export`'s flags and their defaults), torch- and onnx-free so
that the command line can show its defaults before the heavy modules load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportOptions:
    precision: str = "fp32"  # "fp32" | "fp16"
    max_batch: int = 8  # largest batch the runtime (and TensorRT profiles) accept
    opset: int = 17
    tensorrt: bool = False  # also build this machine's TensorRT engines
    force: bool = False  # replace an existing bundle
    real_frames: Path | None = None  # clips for the parity gate; random frames when absent

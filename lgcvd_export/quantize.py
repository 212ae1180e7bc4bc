"""int8 graphs: static Q/DQ quantization, calibrated along real sampler trajectories.

onnxruntime's `quantize_static` rewrites an fp32 graph with QuantizeLinear / DequantizeLinear
pairs: weights per output channel, activations per tensor, both symmetric int8 (zero point 0),
which is the explicit-quantization form TensorRT 10 and 11 build from (docs/precision.md).
Activation ranges (min/max) come from calibration inputs recorded while the fp32 graphs run the
runtime's own `Pipeline` on real clips: the denoiser sees x_t at every timestep of the sampling
plan with conditions and context from real frames (a denoiser's activations change with t, so
random or single-t inputs would mis-scale it), the context graph sees the windows it encodes.

Which ops stay in float is a named choice (`FLOAT_OPS`), chosen by measurement
(docs/precision.md): "none" quantizes everything onnxruntime can, "sensitive" keeps the
normalisations, softmax and the time embedding in float, "weighted" quantizes only the inputs and
weights of convolutions and matrix products (where TensorRT places Q/DQ; their outputs, which
feed a normalisation with outliers up to ~100, stay float), "weighted-io" also keeps the first
convolution (x_t at small t carries noise below int8's step) and the output one in float,
"conv-io" quantizes only the convolutions (attention and the time MLP stay float), and the
"-p9999" / "-p999" variants take activation ranges at that percentile of |x| instead of min/max
(outliers otherwise set the scale). The default is the best of them by the end-to-end gate.
Knows nothing about torch or the model.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.pipeline import Pipeline, SamplerSettings, row_generators
from lgcvd_runtime.schedule import Plan

from .precision import time_embedding_nodes

# Which parts of a graph stay in float, by name; the measurements behind the choices are in
# docs/precision.md (tools/bench_export.py --int8-choice compares them). Exports use the default.
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

CALIB_BATCH = 4  # samples per calibration call: onnxruntime holds every activation of a call


class GraphRunner:
    """The pipeline's `Backend` protocol on onnxruntime sessions of a folder's graphs (fp32 or
    int8); with `record`, keeps every call's named inputs for calibration."""

    name = "onnxruntime-calibration"

    def __init__(self, sessions, record: bool = False):
        self.sessions, self.record = sessions, record
        self.feeds: dict[str, list[dict[str, np.ndarray]]] = {"context": [], "denoiser": []}

    def _run(self, graph: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.record:
            names = [i.name for i in self.sessions.sessions[graph].get_inputs()]
            self.feeds[graph].append(
                {n: np.array(a, dtype=np.float32) for n, a in zip(names, arrays, strict=True)}
            )
        return self.sessions.run(graph, arrays)

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        if "context" not in self.sessions.sessions:
            return ()
        return tuple(self._run("context", [prev]))

    def denoise(self, x_t, t, cond, context) -> np.ndarray:
        return self._run("denoiser", [x_t, t, cond, *context])[0]


def predict(runner: GraphRunner, spec: ModelSpec, plan: Plan, sampler: str, clips, p, n, seed):
    """clips (S, p+n, 3, H, W) in [-1, 1] -> predicted frames (S, n, 3, H, W), seeded."""
    pipe = Pipeline(runner, spec, SamplerSettings(plan, sampler))
    windows = list(pipe.predict(clips[:, :p], n, row_generators(seed, len(clips))))
    return np.concatenate([w.frames for w in windows], axis=1)


class TrajectoryReader(CalibrationDataReader):
    """Recorded calls, split into batches of at most CALIB_BATCH samples, one per `get_next`.
    `set_range` is onnxruntime's hook for calibrating a slice at a time (CalibStridedMinMax)."""

    def __init__(self, calls: list[dict[str, np.ndarray]]):
        self.items = [
            {k: v[i : i + CALIB_BATCH] for k, v in call.items()}
            for call in calls
            for i in range(0, len(next(iter(call.values()))), CALIB_BATCH)
        ]
        self.set_range(0, len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending: Iterator[dict[str, np.ndarray]] = iter(self.items[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._pending, None)


def float_nodes(model: onnx.ModelProto, choice: str) -> list[str]:
    """Names of the nodes a choice keeps in float (beyond op types it does not quantize)."""
    c = FLOAT_OPS[choice]
    names = [n.name for n in model.graph.node if n.op_type in c.float_ops]
    if c.time_embedding:
        names += time_embedding_nodes(model.graph)
    if c.io_convs:
        convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
        names += [convs[0], convs[-1]]  # ONNX's topological order: first reads x_t, last writes
    return names


def to_int8(src: Path, dst: Path, calls: list[dict[str, np.ndarray]], choice: str) -> None:
    """Write the Q/DQ int8 version of the fp32 graph `src` to `dst`, calibrated on `calls`."""
    model, c = onnx.load(str(src)), FLOAT_OPS[choice]
    extra = {} if c.outputs else {"OpTypesToExcludeOutputQuantization": list(c.quantized or ())}
    method = CalibrationMethod.MinMax
    if c.percentile is not None:
        method, extra["CalibPercentile"] = CalibrationMethod.Percentile, c.percentile
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's pre-processing advice
    with contextlib.redirect_stdout(io.StringIO()):  # and its histogram progress lines
        quantize_static(
            str(src),
            str(dst),
            TrajectoryReader(calls),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=None if c.quantized is None else list(c.quantized),
            nodes_to_exclude=float_nodes(model, choice),
            calibrate_method=method,
            extra_options={
                "ActivationSymmetric": True,  # TensorRT takes zero-point-0 int8 only
                "WeightSymmetric": True,
                "CalibStridedMinMax": 1,  # ranges (or histograms) merged call by call: bounded memory
                **extra,
            },
        )
    onnx.checker.check_model(str(dst))

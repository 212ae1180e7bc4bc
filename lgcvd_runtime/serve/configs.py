"""Triton model configurations (`config.pbtxt`) of a bundle's models, written from its manifest.

The manifest's `TensorSpec`s are the one description of graph I/O (docs/design.md): names, dtypes and
shapes of the `context` and `denoiser` models come from them, with the symbolic batch dimension
left to Triton (`max_batch_size` = the bundle's max batch). A tensor whose only dimension is the
batch (the denoiser's `t`) travels as (B, 1) and is reshaped to (B,) for the graph, as Triton's
model configuration documents for such inputs.

The `lgcvd` model's request and response tensors are named here once; the Python-backend model
(`triton_models`) and the client (`lgcvd_runtime.serve.client`) read these names.
This module only writes text: it imports no Triton package and knows no window logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from lgcvd_runtime.bundle import BATCH, GraphSpec, TensorSpec
from lgcvd_runtime.errors import LgcvdError

GRAPH_BACKENDS = ("onnxruntime", "tensorrt", "python")
KINDS = ("gpu", "cpu")
PIPELINE_MODEL = "lgcvd"
DEFAULT_QUEUE_DELAY_US = 2000

# The lgcvd model: one clip per request, one response holding every predicted frame.
REQUEST_FRAMES = "frames"  # (p, H, W, 3) uint8, any H, W (fitted like the library does)
REQUEST_N = "n"  # (1,) int32: frames to predict
REQUEST_SEED = "seed"  # (1,) int64: the clip's seed
REQUEST_SAMPLES = "samples"  # (1,) int32, optional (default 1)
RESPONSE_FRAMES = "predicted"  # (S, n, size, size, 3) uint8
RESPONSE_STARTS = "starts"  # (W,) int32: the first frame index of each window
RESPONSE_SCORE = "input_score"  # (1,) float64: the input score (ood); (0,) if uncalibrated
OOD_PARAMETER = "ood"  # the bundle's calibration record as JSON, for clients' warnings
MAX_FRAMES_PARAMETER = "max_frames"  # the most frames (n x samples) one request may ask for
DEFAULT_MAX_FRAMES = 1024  # also the limit of a repository made before the parameter existed
DEFAULT_TIMEOUT = 300.0  # seconds a client lets one request take (long forecasts on a CPU)
DEFAULT_RETRIES = 2  # tries a client adds for a call that finds no server (one restarting)


def frames_limit_error(n: int, samples: int, limit: int) -> str | None:
    """The one line refusing a request for more than `limit` frames (n x samples), else None.
    The server refuses such a request, and the client before sending it: a huge n would hold a
    pipeline instance (and its memory) for as long as it runs."""
    if n < 1 or samples < 1 or n * samples <= limit:
        return None  # (a count below 1 is the library's to refuse)
    return (
        f"asked for {n * samples} frames (n = {n}, samples = {samples}); the server gives at "
        f"most {limit} per request: ask for fewer, or serve a repository made with a larger "
        "--max-frames"
    )


@dataclass(frozen=True)
class Instances:
    """Where and how many copies of a model Triton runs."""

    count: int = 1
    kind: str = "gpu"  # "gpu" | "cpu"

    def pbtxt(self) -> str:
        if self.count < 1:
            raise LgcvdError(f"instance count must be at least 1, got {self.count}")
        if self.kind not in KINDS:
            raise LgcvdError(f"instance kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        return f"instance_group [\n  {{\n    count: {self.count}\n    kind: KIND_{self.kind.upper()}\n  }}\n]\n"


def triton_type(dtype: str) -> str:
    """Manifest dtype -> Triton data type, e.g. "float16" -> "TYPE_FP16"."""
    types = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
    if dtype not in types:
        raise LgcvdError(f"dtype {dtype!r} cannot be served; export the bundle again")
    return types[dtype]


def triton_dims(spec: TensorSpec) -> tuple[int, ...]:
    """The dims Triton sees for `spec`, without the batch: a batch-only tensor becomes (1,)."""
    if not spec.shape or spec.shape[0] != BATCH or BATCH in spec.shape[1:]:
        raise LgcvdError(
            f"tensor {spec.name!r} has shape {list(spec.shape)}, not (batch, ...); "
            "export the bundle again"
        )
    return tuple(int(d) for d in spec.shape[1:]) or (1,)


def _dims(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor(spec: TensorSpec) -> str:
    lines = [f'    name: "{spec.name}"', f"    data_type: {triton_type(spec.dtype)}"]
    lines.append(f"    dims: {_dims(triton_dims(spec))}")
    if len(spec.shape) == 1:
        lines.append("    reshape: { shape: [ ] }")
    return "  {\n" + "\n".join(lines) + "\n  }"


def _tensors(section: str, specs) -> str:
    return f"{section} [\n" + ",\n".join(_tensor(s) for s in specs) + "\n]\n"


def _quoted(value: str) -> str:
    """`value` escaped for a double-quoted protobuf text-format string (a JSON parameter)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _parameters(values: dict[str, str]) -> str:
    items = [
        f'  {{\n    key: "{k}"\n    value: {{ string_value: "{_quoted(v)}" }}\n  }}'
        for k, v in values.items()
    ]
    return "parameters [\n" + ",\n".join(items) + "\n]\n" if items else ""


def graph_config(
    name: str,
    graph: GraphSpec,
    backend: str,
    max_batch: int,
    queue_delay_us: int,
    instances: Instances,
) -> str:
    """config.pbtxt of one graph model; `backend` "python" runs the ONNX graph on onnxruntime
    inside Triton's Python backend (`triton_models.GraphModel`)."""
    if backend not in GRAPH_BACKENDS:
        raise LgcvdError(
            f"unknown graph backend {backend!r}; choose one of {', '.join(GRAPH_BACKENDS)}"
        )
    if queue_delay_us < 0:
        raise LgcvdError(f"queue delay must be at least 0 microseconds, got {queue_delay_us}")
    text = f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: {max_batch}\n'
    text += _tensors("input", graph.inputs) + _tensors("output", graph.outputs)
    text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"
    text += instances.pbtxt()
    if backend == "python":
        text += _parameters({"onnx_file": "model.onnx", "sha256": graph.sha256})
    return text


def pipeline_config(instances: int, settings: dict[str, str]) -> str:
    """config.pbtxt of the `lgcvd` model: one request = one clip, frames of any size; `settings`
    (sampler, steps, graph model names, the calibration) are passed as parameters."""
    frames_in = f'  {{\n    name: "{REQUEST_FRAMES}"\n    data_type: TYPE_UINT8\n    dims: [ -1, -1, -1, 3 ]\n  }}'
    scalars = [
        f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ 1 ]{opt}\n  }}'
        for name, dtype, opt in (
            (REQUEST_N, "TYPE_INT32", ""),
            (REQUEST_SEED, "TYPE_INT64", ""),
            (REQUEST_SAMPLES, "TYPE_INT32", "\n    optional: true"),
        )
    ]
    outputs = [
        f'  {{\n    name: "{RESPONSE_FRAMES}"\n    data_type: TYPE_UINT8\n    dims: [ -1, -1, -1, -1, 3 ]\n  }}',
        f'  {{\n    name: "{RESPONSE_STARTS}"\n    data_type: TYPE_INT32\n    dims: [ -1 ]\n  }}',
        f'  {{\n    name: "{RESPONSE_SCORE}"\n    data_type: TYPE_FP64\n    dims: [ -1 ]\n  }}',
    ]
    text = f'name: "{PIPELINE_MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
    text += "input [\n" + ",\n".join([frames_in, *scalars]) + "\n]\n"
    text += "output [\n" + ",\n".join(outputs) + "\n]\n"
    text += Instances(instances, "cpu").pbtxt()
    return text + _parameters(settings)

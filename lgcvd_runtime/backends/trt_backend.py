"""Native TensorRT backend: per-machine engines built from the bundle's graphs, run with pycuda.

An engine is tied to one graph, one TensorRT version and one GPU model, so its file name says all
three: `engines/<graph>-<sha256[:16]>-trt<version>-<gpu>.engine` (under
`graph_io.engine_cache_dir`), with a JSON sidecar holding the graph's full sha256 and the
engine's own. An engine is loaded only when both hashes match; a missing or stale one is rebuilt
from the ONNX graph with the builder API (profile: batch 1 .. max_batch, from the manifest), never
loaded. `tensorrt` and `pycuda` are imported inside the functions that need them, so this module
imports anywhere (design.md Bundle, style.md 9).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lgcvd_runtime.bundle import GraphSpec, Manifest
from lgcvd_runtime.errors import BackendError
from lgcvd_runtime.files import write_then_rename

from .graph_io import concrete_shape, engine_cache_dir, prepare_inputs

INSTALL = "pip install 'lgcvd[tensorrt]'"


def unavailable() -> str | None:
    """None if tensorrt and pycuda are installed and a CUDA GPU is visible, else the reason."""
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    import pycuda.driver as cuda

    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA GPU is visible"
    except cuda.Error as err:
        return f"CUDA does not start ({err})"
    return None


def machine_tag() -> str:
    """'trt<version>-<gpu model>' of this machine, e.g. 'trt10.3.0-nvidia-h100-80gb-hbm3'."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    gpu = re.sub(r"[^a-z0-9]+", "-", cuda.Device(0).name().lower()).strip("-")
    return f"trt{trt.__version__}-{gpu}"


def engine_path(bundle: Path, graph_name: str, graph: GraphSpec, tag: str) -> Path:
    return engine_cache_dir(bundle) / f"{graph_name}-{graph.sha256[:16]}-{tag}.engine"


def _sidecar(engine: Path) -> Path:
    return engine.with_suffix(".json")


def current_engine(engine: Path, graph: GraphSpec) -> bytes | None:
    """The engine's bytes, only if it and its sidecar exist, the sidecar names this graph's
    sha256 and the bytes still have the hash recorded when the engine was built; else None."""
    try:
        meta = json.loads(_sidecar(engine).read_text())
        data = engine.read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("graph_sha256") != graph.sha256:
        return None
    if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data


def save_engine(engine: Path, data: bytes, graph: GraphSpec, tag: str) -> None:
    """Write the engine and its sidecar, each to a temporary file renamed into place."""
    with write_then_rename(engine) as tmp:
        tmp.write_bytes(data)
    meta = {"graph_sha256": graph.sha256, "engine_sha256": hashlib.sha256(data).hexdigest()}
    meta["machine"] = tag
    side = _sidecar(engine)
    with write_then_rename(side) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def engines_ready(bundle: Path, manifest: Manifest) -> bool:
    """True if TensorRT runs here and current engines of both graphs exist (what `auto` needs)."""
    if unavailable() is not None:
        return False
    tag = machine_tag()
    return all(
        current_engine(engine_path(bundle, name, graph, tag), graph) is not None
        for name, graph in manifest.graphs.items()
    )


def build_engine(
    onnx_file: Path, graph: GraphSpec, manifest: Manifest, timing_cache: Path | None = None
) -> bytes:
    """Serialized engine of one ONNX graph; fp16 kernels allowed for an fp16 bundle. With
    `timing_cache`, kernel timings are read from that file and the updated cache written back,
    so later builds on this GPU skip the measurements."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch (the only mode in TensorRT 10)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        detail = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise BackendError(f"TensorRT cannot parse {onnx_file} ({detail}); export it again")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for t in graph.inputs:
        low, high = concrete_shape(t, 1), concrete_shape(t, manifest.max_batch)
        profile.set_shape(t.name, low, high, high)
    config.add_optimization_profile(profile)
    if manifest.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if timing_cache is not None:
        old = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(old), ignore_mismatch=False)
    data = builder.build_serialized_network(network, config)
    if data is not None and timing_cache is not None:
        with write_then_rename(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    if data is None:
        raise BackendError(
            f"TensorRT could not build an engine from {onnx_file}; see its log above"
        )
    return bytes(data)


class _Engine:
    """One deserialized engine with device buffers for the largest batch; runs on host arrays."""

    def __init__(self, data: bytes, graph: GraphSpec, max_batch: int):
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context once per process)
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda, self.graph, self.max_batch = cuda, graph, max_batch
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError(
                f"TensorRT could not load the engine of {graph.file}; delete the bundle's "
                "engines folder to rebuild it"
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._buffers = {}
        for t in (*graph.inputs, *graph.outputs):
            size = int(np.prod(concrete_shape(t, max_batch))) * np.dtype(t.dtype).itemsize
            self._buffers[t.name] = cuda.mem_alloc(size)
            self._context.set_tensor_address(t.name, int(self._buffers[t.name]))

    def run(self, arrays) -> list[np.ndarray]:
        feeds = prepare_inputs(self.graph, arrays, self.max_batch)
        batch = next(iter(feeds.values())).shape[0]
        for name, array in feeds.items():
            self._context.set_input_shape(name, array.shape)
            self._cuda.memcpy_htod_async(self._buffers[name], array, self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError(
                f"TensorRT failed to run the engine of {self.graph.file}; delete the bundle's "
                "engines folder to rebuild it"
            )
        outputs = []
        for t in self.graph.outputs:
            out = np.empty(concrete_shape(t, batch), dtype=t.dtype)
            self._cuda.memcpy_dtoh_async(out, self._buffers[t.name], self._stream)
            outputs.append(out)
        self._stream.synchronize()
        return outputs


class TrtBackend:
    """The `Backend` protocol on native TensorRT engines; `calls` counts encode and denoise."""

    name = "tensorrt"

    def __init__(self, bundle: Path, manifest: Manifest, log: Callable[[str], None] | None = None):
        reason = unavailable()
        if reason is not None:
            raise BackendError(f"backend tensorrt is unavailable ({reason}); {INSTALL}")
        self.calls = {"encode": 0, "denoise": 0}
        tag = machine_tag()
        self._engines = {}
        for name, graph in manifest.graphs.items():
            engine = engine_path(Path(bundle), name, graph, tag)
            data = current_engine(engine, graph)
            if data is None:  # missing or stale: rebuilt, never loaded
                if log is not None:
                    log(f"building the TensorRT engine for {graph.file} (once per machine)...")
                data = build_engine(Path(bundle) / graph.file, graph, manifest)
                save_engine(engine, data, graph, tag)
            self._engines[name] = _Engine(data, graph, manifest.max_batch)

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls["encode"] += 1
        if "context" not in self._engines:  # a model without global context
            return ()
        return tuple(self._engines["context"].run((prev,)))

    def denoise(self, x_t, t, cond, context) -> np.ndarray:
        self.calls["denoise"] += 1
        (out,) = self._engines["denoiser"].run((x_t, t, cond, *context))
        return out.astype(np.float32, copy=False)

"""Native TensorRT backend: per-machine engines built from the bundle's graphs, run with pycuda.

An engine is tied to one graph, one TensorRT version and one GPU model, so its file name says all
three: `engines/<graph>-<sha256[:16]>-trt<version>-<gpu>.engine` (under
`graph_io.engine_cache_dir`), with a JSON sidecar holding the graph's full sha256, the machine
and the engine's own sha256. An engine is loaded only when all three match; a missing or stale
one is rebuilt from the ONNX graph with the builder API (profile: batch 1 .. max_batch, from the
manifest), never loaded, and a stale one is named in one line. Networks are strongly typed for
every precision (`trt_compat`); `trt_engine` runs them. `tensorrt` and `pycuda` are imported
inside the functions that need them, so this module imports anywhere (docs/design.md,
"The runtime's layers").
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lgcvd_runtime.bundle import GraphSpec, Manifest
from lgcvd_runtime.errors import BackendError, first_line
from lgcvd_runtime.files import write_then_rename

from .graph_io import concrete_shape, engine_cache_dir, prepare_inputs
from .trt_compat import network_flags
from .trt_engine import Engine, Gpu

CUDA_GRAPH = "tensorrt_cuda_graph"  # manifest provenance key: replay CUDA graphs by default


def unavailable() -> str | None:
    """None if tensorrt and pycuda load and a CUDA GPU is visible, else the reason; never raises
    (a pycuda without a loadable driver raises ImportError, OSError or its own error)."""
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    try:
        import tensorrt as trt
    except (ImportError, OSError, RuntimeError) as err:
        return f"tensorrt does not load ({first_line(err)})"
    if not hasattr(trt, "Builder"):  # e.g. only tensorrt-stubs' namespace package is installed
        return "tensorrt not installed (only its type stubs are)"
    try:
        import pycuda.driver as cuda
    except (ImportError, OSError, RuntimeError) as err:
        return f"pycuda does not load ({first_line(err)}); is the NVIDIA driver installed?"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA GPU is visible"
    except (cuda.Error, OSError, RuntimeError) as err:
        return f"CUDA does not start ({first_line(err)})"
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


def engine_state(engine: Path, graph: GraphSpec, tag: str | None) -> tuple[bytes | None, str]:
    """(the engine's bytes, "current") when it may be loaded; else (None, "missing") or
    (None, why it is stale). Current: engine and sidecar exist, the sidecar names this graph's
    sha256 and this machine (when `tag` is given), and the bytes have the recorded sha256."""
    if not engine.exists() and not _sidecar(engine).exists():
        return None, "missing"
    try:
        meta = json.loads(_sidecar(engine).read_text())
        data = engine.read_bytes()
    except (OSError, ValueError):
        return None, "the engine or its sidecar is missing or unreadable"
    if meta.get("graph_sha256") != graph.sha256:
        return None, "built from another version of the graph"
    if tag is not None and meta.get("machine") != tag:
        return None, f"built for {meta.get('machine')}, this machine is {tag}"
    if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        return None, "the engine file changed after it was built"
    return data, "current"


def current_engine(engine: Path, graph: GraphSpec, tag: str | None = None) -> bytes | None:
    """The engine's bytes if `engine_state` finds it current, else None."""
    return engine_state(engine, graph, tag)[0]


def save_engine(engine: Path, data: bytes, graph: GraphSpec, tag: str) -> None:
    """Write the engine and its sidecar, each to a temporary file renamed into place."""
    with write_then_rename(engine) as tmp:
        tmp.write_bytes(data)
    meta = {"graph_sha256": graph.sha256, "engine_sha256": hashlib.sha256(data).hexdigest()}
    meta["machine"] = tag
    with write_then_rename(_sidecar(engine)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def stale_note(bundle: Path, name: str, graph: GraphSpec, tag: str) -> str | None:
    """One line when the cached engine for this graph and machine cannot be used, or only other
    machines' (other TensorRT versions' or GPUs') engines are cached; None when there is none."""
    engine = engine_path(bundle, name, graph, tag)
    state = engine_state(engine, graph, tag)[1]
    if state == "current":
        return None
    if state != "missing":
        return f"cached TensorRT engine {engine.name} is stale ({state}); rebuilding it"
    others = sorted(p.name for p in engine.parent.glob(f"{name}-*.engine") if p != engine)
    if others:
        return (
            f"cached TensorRT engines of {graph.file} ({', '.join(others)}) are stale "
            f"for this machine ({tag}); building a new one"
        )
    return None


def engines_ready(bundle: Path, manifest: Manifest) -> bool:
    """True if TensorRT runs here and current engines of both graphs exist (what `auto` needs)."""
    if unavailable() is not None:
        return False
    tag = machine_tag()
    return all(
        current_engine(engine_path(bundle, name, graph, tag), graph, tag) is not None
        for name, graph in manifest.graphs.items()
    )


def build_engine(
    onnx_file: Path, graph: GraphSpec, manifest: Manifest, timing_cache: Path | None = None
) -> bytes:
    """Serialized engine of one ONNX graph, strongly typed: its precision is the graph's own
    (fp32, fp16 with fp32 islands, int8 Q/DQ), no builder precision flag. With `timing_cache`,
    kernel timings are read from that file and the updated cache written back, so later builds
    on this GPU skip the measurements."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        detail = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise BackendError(f"TensorRT cannot parse {onnx_file} ({detail}); export it again")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for t in graph.inputs:
        low = trt.Dims(list(concrete_shape(t, 1)))
        high = trt.Dims(list(concrete_shape(t, manifest.max_batch)))
        profile.set_shape(t.name, low, high, high)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        old = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(old), ignore_mismatch=False)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise BackendError(
            f"TensorRT could not build an engine from {onnx_file}; see its log above"
        )
    if timing_cache is not None:
        with write_then_rename(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(memoryview(data))


def load_or_build(
    bundle: Path, name: str, graph: GraphSpec, manifest: Manifest, tag: str, log
) -> bytes:
    """This machine's current engine of one graph, built (and cached) when missing or stale."""
    engine = engine_path(bundle, name, graph, tag)
    data = current_engine(engine, graph, tag)
    if data is not None:
        return data
    if log is not None:
        note = stale_note(bundle, name, graph, tag)
        log(note or f"building the TensorRT engine for {graph.file} (once per machine)...")
    data = build_engine(bundle / graph.file, graph, manifest)
    save_engine(engine, data, graph, tag)
    return data


class TrtBackend:
    """The `Backend` protocol on native TensorRT engines; `calls` counts encode and denoise.

    Callable from any thread, one call at a time. The context tensors are copied to the device
    once per window: `denoise` uploads them only when handed a context tuple other than the one
    it uploaded last (the pipeline passes the same tuple, unchanged, to every step of a window).
    `cuda_graph` (None: the bundle's `tensorrt_cuda_graph` setting, off unless exported with
    --cuda-graph) replays the denoiser as a CUDA graph captured once per batch size."""

    name = "tensorrt"

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        log: Callable[[str], None] | None = None,
        cuda_graph: bool | None = None,
    ):
        self.calls = {"encode": 0, "denoise": 0}
        self.max_batch = manifest.max_batch
        self.graphs = manifest.graphs
        default = bool(manifest.provenance.get(CUDA_GRAPH, False))
        self.cuda_graph = default if cuda_graph is None else cuda_graph
        tag = machine_tag()
        data = {
            name: load_or_build(Path(bundle), name, graph, manifest, tag, log)
            for name, graph in manifest.graphs.items()
        }
        self._gpu = Gpu()
        with self._gpu.current() as cuda:
            self._stream = cuda.Stream()
            self._engines = {
                name: Engine(cuda, data[name], graph, manifest.max_batch, self._stream)
                for name, graph in manifest.graphs.items()
            }
            size = max(e.scratch_bytes for e in self._engines.values())
            self._scratch: Any = cuda.mem_alloc(max(size, 1))
            for engine in self._engines.values():
                engine.attach_scratch(int(self._scratch), size)
        self._resident: tuple | None = None  # the context tuple now in the denoiser's inputs
        self._ctx_names = frozenset(
            t.name for t in self.graphs["denoiser"].inputs if t.name.startswith("ctx_")
        )

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls["encode"] += 1
        if "context" not in self._engines:  # a model without global context
            return ()
        feeds = prepare_inputs(self.graphs["context"], (prev,), self.max_batch)
        with self._gpu.current():
            return tuple(self._engines["context"].run(feeds, frozenset(), cuda_graph=False))

    def denoise(self, x_t, t, cond, context) -> np.ndarray:
        self.calls["denoise"] += 1
        feeds = prepare_inputs(self.graphs["denoiser"], (x_t, t, cond, *context), self.max_batch)
        resident = self._ctx_names if context is self._resident else frozenset()
        self._resident = None  # until the upload below has finished
        with self._gpu.current():
            (out,) = self._engines["denoiser"].run(feeds, resident, self.cuda_graph)
        self._resident = context
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        """Free the engines' device memory now, from any thread."""
        with self._gpu.current():
            for engine in self._engines.values():
                engine.free()
            self._scratch.free()
        self._engines.clear()
        self._resident = None

"""onnxruntime backend: the bundle's two graphs on the CPU, CUDA or TensorRT execution provider.

One `InferenceSession` per graph, created once when the backend is built; every call checks and
casts its inputs against the manifest (`graph_io.prepare_inputs`) and returns float32 model
output. Context tensors stay in the graph's dtype, since they only travel back into the denoiser.
The TensorRT execution provider caches its engines under `graph_io.engine_cache_dir`, with
optimisation profiles from the manifest's shapes (batch 1 .. max_batch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lgcvd_runtime.bundle import GraphSpec, Manifest
from lgcvd_runtime.errors import BackendError, first_line

from .base import GraphCallBackend
from .graph_io import check_ort_session, concrete_shape, engine_cache_dir, prepare_inputs

# backend name -> execution providers, in onnxruntime's order of preference
PROVIDERS = {
    "onnxruntime": ("CPUExecutionProvider",),
    "onnxruntime-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "onnxruntime-tensorrt": (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ),
}


def unavailable(name: str) -> str | None:
    """None if this onnxruntime build has the backend's main provider, else the reason."""
    provider = PROVIDERS[name][0]
    if provider in ort.get_available_providers():
        return None
    return f"this onnxruntime build ({ort.__version__}) has no {provider}"


def _profile(graph: GraphSpec, batch: int) -> str:
    """TensorRT EP shape string for one batch size, e.g. "prev:1x24x32x32"."""
    return ",".join(
        f"{t.name}:{'x'.join(str(d) for d in concrete_shape(t, batch))}" for t in graph.inputs
    )


def _provider_options(name: str, bundle: Path, graph: GraphSpec, max_batch: int) -> list:
    """Provider list for `InferenceSession`, with TensorRT EP options where used."""
    providers: list = list(PROVIDERS[name])
    if name == "onnxruntime-tensorrt":
        cache = engine_cache_dir(bundle) / "onnxruntime"
        cache.mkdir(parents=True, exist_ok=True)
        trt = {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_profile_min_shapes": _profile(graph, 1),
            "trt_profile_opt_shapes": _profile(graph, max_batch),
            "trt_profile_max_shapes": _profile(graph, max_batch),
        }
        providers[0] = (providers[0], trt)
    return providers


class OrtBackend(GraphCallBackend):
    """The `Backend` protocol (backends.base) on onnxruntime; `calls` counts encode and denoise."""

    def __init__(self, name: str, bundle: Path, manifest: Manifest, threads: int | None = None):
        super().__init__(manifest.graphs)
        self.name = name
        self.threads = threads  # CPU threads per call; None: onnxruntime's (the physical cores)
        self.manifest = manifest
        self._graphs = manifest.graphs
        self._sessions = {g: self._session(name, Path(bundle), g) for g in self._graphs}

    def _session(self, name: str, bundle: Path, graph_name: str) -> ort.InferenceSession:
        graph = self._graphs[graph_name]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: provider fallbacks are checked below
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        providers = _provider_options(name, bundle, graph, self.manifest.max_batch)
        try:
            session = ort.InferenceSession(str(bundle / graph.file), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise BackendError(
                f"onnxruntime cannot load {bundle / graph.file} ({first_line(err)}); "
                "export the bundle again"
            ) from None
        wanted = PROVIDERS[name][0]
        if session.get_providers()[0] != wanted:
            raise BackendError(
                f"onnxruntime could not start {wanted} (GPU driver or CUDA libraries missing?); "
                "install them or choose --backend onnxruntime"
            )
        check_ort_session(graph, session, bundle / graph.file)
        return session

    def _run(self, graph_name: str, arrays) -> list[np.ndarray]:
        graph = self._graphs[graph_name]
        feeds = prepare_inputs(graph, arrays, self.manifest.max_batch)
        names = [t.name for t in graph.outputs]
        return self._sessions[graph_name].run(names, feeds)

    def close(self) -> None:
        """Drop the inference sessions (onnxruntime frees them with the last reference)."""
        self._sessions.clear()

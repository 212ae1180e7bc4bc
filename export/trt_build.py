"""TensorRT engines prebuilt at export time, so the first run on this machine starts at once.

The engines are exactly those the runtime's native TensorRT backend would build and cache
(`lgcvd_runtime.backends.trt_backend`: same builder settings, file names, sidecars and staleness
rules: one engine per graph, TensorRT version and GPU model), placed in the bundle's `engines/`
folder and listed in the manifest's provenance. TensorRT itself is imported only by that module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lgcvd_runtime.backends import trt_backend
from lgcvd_runtime.backends.graph_io import engine_cache_dir
from lgcvd_runtime.bundle import Manifest, sha256_file
from lgcvd_runtime.errors import BackendError


def require_tensorrt() -> None:
    """Raise a one-line `BackendError` unless TensorRT and a CUDA GPU are usable here."""
    reason = trt_backend.unavailable()
    if reason is not None:
        raise BackendError(
            f"TensorRT is unavailable ({reason}): {trt_backend.INSTALL} (needs an NVIDIA GPU), "
            "or export without --tensorrt"
        )


def build_engines(directory: Path, manifest: Manifest, echo: Callable[[str], None]) -> list[dict]:
    """Build and save an engine for every graph of the bundle in `directory`; describe them."""
    require_tensorrt()
    tag = trt_backend.machine_tag()
    engines = []
    for name, graph in manifest.graphs.items():
        echo(f"building the TensorRT engine for {graph.file} ({tag})...")
        path = trt_backend.engine_path(directory, name, graph, tag)
        data = trt_backend.build_engine(
            directory / graph.file, graph, manifest, engine_cache_dir(directory) / "timing.cache"
        )
        trt_backend.save_engine(path, data, graph, tag)
        engines.append(
            {
                "graph": name,
                "file": path.relative_to(directory).as_posix(),
                "sha256": sha256_file(path),
                "machine": tag,
            }
        )
    return engines

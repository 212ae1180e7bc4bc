"""TensorRT engines prebuilt at export time, so the first run on this machine starts at once.

The engines are exactly those the runtime's native TensorRT backend would build and cache
(`lgcvd_runtime.backends.trt_backend`: same strongly typed builder settings, file names, sidecars
and staleness rules: one engine per graph, TensorRT version and GPU model), placed in the
bundle's `engines/` folder and listed in the manifest's provenance. With `cuda_graph`, the
backend is loaded on them once, the denoiser replayed as a CUDA graph at batch 1 and max batch
and compared with an ordinary run, and the bundle marked to replay graphs by default. TensorRT
itself is imported only by the runtime's modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lgcvd_runtime.backends import ENTRIES, trt_backend
from lgcvd_runtime.backends.graph_io import concrete_shape, engine_cache_dir
from lgcvd_runtime.bundle import Manifest, sha256_file
from lgcvd_runtime.errors import BackendError

GRAPH_TOLERANCE = 1e-5  # a replayed graph runs the same kernels: only reordering may differ


def require_tensorrt() -> None:
    """Raise a one-line `BackendError` unless TensorRT and a CUDA GPU are usable here."""
    entry = ENTRIES["tensorrt"]
    reason = entry.unavailable()
    if reason is not None:
        raise BackendError(
            f"TensorRT is unavailable ({reason}): {entry.install} (needs an NVIDIA GPU), "
            "or export without --tensorrt"
        )


def build_engines(directory: Path, manifest: Manifest, echo: Callable[[str], None]) -> list[dict]:
    """Build and save an engine for every graph of the bundle in `directory`; describe them."""
    require_tensorrt()
    tag = trt_backend.machine_tag()
    engines = []
    for name, graph in manifest.graphs.items():
        echo(f"building the TensorRT engine for {graph.file} ({tag}, strongly typed)...")
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


def check_cuda_graph(directory: Path, manifest: Manifest, echo: Callable[[str], None]) -> None:
    """Replay the denoiser as a CUDA graph and compare it with an ordinary run; raise a one-line
    `BackendError` if they differ (then export without --cuda-graph)."""
    plain = trt_backend.TrtBackend(directory, manifest, cuda_graph=False)
    graphed = trt_backend.TrtBackend(directory, manifest, cuda_graph=True)
    rng = np.random.default_rng(0)
    try:
        for batch in sorted({1, manifest.max_batch}):
            feeds = [
                rng.uniform(-1, 1, concrete_shape(t, batch)).astype(np.float32)
                for t in manifest.graphs["denoiser"].inputs
            ]
            x_t, t, cond, *ctx = feeds
            want = plain.denoise(x_t, t, cond, tuple(ctx))
            got = graphed.denoise(x_t, t, cond, tuple(ctx))
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
            echo(f"CUDA graph, batch {batch}: rel. error {err:.1e} (limit {GRAPH_TOLERANCE:.0e})")
            if not err <= GRAPH_TOLERANCE:
                raise BackendError(
                    f"the denoiser's CUDA graph differs from an ordinary run by {err:.1e}; "
                    "export without --cuda-graph"
                )
    finally:
        plain.close()
        graphed.close()

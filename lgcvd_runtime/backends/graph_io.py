"""What every backend does with a graph's inputs and shapes, read from the bundle manifest.

The manifest's `TensorSpec`s (names, dtypes, symbolic "batch") are the one description of graph
I/O (style.md 8): inputs are checked and cast against them before a graph runs, and TensorRT
optimisation profiles are derived from them. Pure numpy; no engine package is imported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lgcvd_runtime.bundle import BATCH, GraphSpec, TensorSpec
from lgcvd_runtime.errors import BackendError


def concrete_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """The spec's shape with the symbolic batch dimension set to `batch`."""
    return tuple(batch if d == BATCH else int(d) for d in spec.shape)


def prepare_inputs(graph: GraphSpec, arrays, max_batch: int) -> dict[str, np.ndarray]:
    """Check `arrays` (in the order of `graph.inputs`) against the specs; return them by name,
    contiguous and cast to each spec's dtype. One batch size throughout, 1..max_batch."""
    if len(arrays) != len(graph.inputs):
        raise BackendError(
            f"{graph.file} takes {len(graph.inputs)} inputs, got {len(arrays)}; "
            "the bundle does not match this runtime, export it again"
        )
    batch = int(np.shape(arrays[0])[0]) if np.ndim(arrays[0]) else 0
    if not 1 <= batch <= max_batch:
        raise BackendError(
            f"batch of {batch} does not fit the bundle's max batch {max_batch}; "
            f"use at most {max_batch} samples or export with a larger max batch"
        )
    feeds = {}
    for spec, array in zip(graph.inputs, arrays, strict=True):
        array = np.asarray(array)
        expected = concrete_shape(spec, batch)
        if array.shape != expected:
            raise BackendError(
                f"{graph.file} input {spec.name!r} needs shape {expected}, got {array.shape}; "
                "the bundle does not match this runtime, export it again"
            )
        feeds[spec.name] = np.ascontiguousarray(array, dtype=spec.dtype)
    return feeds


def engine_cache_dir(bundle: Path) -> Path:
    """Where per-machine engines of `bundle` live: `engines/` inside the bundle when writable,
    else under the user's cache folder ($XDG_CACHE_HOME/lgcvd/engines/<bundle name>)."""
    inside = Path(bundle) / "engines"
    if os.access(inside if inside.exists() else bundle, os.W_OK):
        return inside
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "lgcvd" / "engines" / Path(bundle).resolve().name

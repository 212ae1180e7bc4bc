"""What every backend does with a graph's inputs and shapes, read from the bundle manifest.

The manifest's `TensorSpec`s (names, dtypes, symbolic "batch") are the one description of graph
I/O (docs/design.md): a loaded graph is checked against them once (`check_graph_io`: a bundle whose
graphs were swapped or edited is a one-line error, not an engine's traceback), inputs are
checked and cast against them before a graph runs, and TensorRT optimisation profiles are
derived from them. Pure numpy; no engine package is imported here (an onnxruntime session is
only read through its `get_inputs` / `get_outputs`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lgcvd_runtime.bundle import BATCH, GraphSpec, TensorSpec
from lgcvd_runtime.errors import BackendError, BundleError, plural

# A loaded graph's tensor as an engine reports it: (name, numpy dtype name, shape with None for
# a dynamic dimension).
Tensor = tuple[str, str, tuple]
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def concrete_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """The spec's shape with the symbolic batch dimension set to `batch`."""
    return tuple(batch if d == BATCH else int(d) for d in spec.shape)


def _show(dtype: str, shape) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"{dtype} [{dims}]"


def _dims_match(spec: TensorSpec, shape: tuple) -> bool:
    """A dynamic dimension in the graph fits anything; the manifest's symbolic batch needs one."""
    if len(shape) != len(spec.shape):
        return False
    return all(
        g is None if d == BATCH else g is None or g == int(d)
        for d, g in zip(spec.shape, shape, strict=True)
    )


def _check_side(side: str, specs, tensors: list[Tensor], where: str) -> None:
    fix = (
        "the bundle's graphs do not match its manifest (files swapped or edited?); export it again"
    )
    found = {name: (dtype, tuple(shape)) for name, dtype, shape in tensors}
    wanted = [spec.name for spec in specs]
    if sorted(found) != sorted(wanted):
        raise BundleError(
            f"{where} has {side}s ({', '.join(found)}) but the manifest names "
            f"({', '.join(wanted)}); {fix}"
        )
    for spec in specs:
        dtype, shape = found[spec.name]
        if dtype != spec.dtype or not _dims_match(spec, shape):
            raise BundleError(
                f"{where} {side} {spec.name!r} is {_show(dtype, shape)} but the manifest says "
                f"{_show(spec.dtype, spec.shape)}; {fix}"
            )


def check_graph_io(graph: GraphSpec, inputs: list[Tensor], outputs: list[Tensor], where) -> None:
    """Check a loaded graph's inputs and outputs (as its engine reports them, see `Tensor`)
    against the manifest's: the same names, dtypes and shapes, a dynamic dimension where the
    manifest has its symbolic batch. `where` names the graph file in the message."""
    _check_side("input", graph.inputs, inputs, where)
    _check_side("output", graph.outputs, outputs, where)


def _ort_tensors(args) -> list[Tensor]:
    """onnxruntime NodeArgs -> Tensors (symbolic or unknown dimensions become None)."""
    return [
        (
            a.name,
            _ORT_DTYPES.get(a.type, a.type),
            tuple(d if isinstance(d, int) and d >= 0 else None for d in a.shape),
        )
        for a in args
    ]


def check_ort_session(graph: GraphSpec, session, where) -> None:
    """`check_graph_io` for an onnxruntime InferenceSession."""
    check_graph_io(
        graph, _ort_tensors(session.get_inputs()), _ort_tensors(session.get_outputs()), where
    )


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
            f"use at most {plural(max_batch, 'sample')} or export with a larger max batch"
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

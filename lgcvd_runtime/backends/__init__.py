"""Inference backends: the registry, `auto` selection and loading (docs/design.md).

Each engine has its own module, which alone imports its engine package; the protocol and the
entry type are in `base`. `REGISTRY` lists one `BackendEntry` per backend, fastest first, which is
the order `auto` tries: native TensorRT (only when this machine's engines are already built),
onnxruntime's TensorRT, CUDA and CPU execution providers. An entry names its engine module and
imports it only when asked whether it can run or to build it, so importing the registry (and the
pipeline, the API and the torch reference above it) loads no engine package. Adding a backend is
adding an entry.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.errors import BackendError
from lgcvd_runtime.signals import signals_deferred

from .base import Backend, BackendEntry, Log

AUTO = "auto"


def _engine(module: str):
    """The engine module `module` of this package, imported now (it imports its package), with
    stops held back: a stop inside an extension module's initialisation (onnxruntime's) turns
    into "ImportError: initialization failed" instead of a stop."""
    with signals_deferred():
        return importlib.import_module(f"{__name__}.{module}")


def _ort_entry(name: str, runs_on: str, install: str) -> BackendEntry:
    def unavailable() -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime not installed"
        return _engine("ort_backend").unavailable(name)

    def create(bundle: Path, manifest: Manifest, log: Log | None, threads: int | None):
        return _engine("ort_backend").OrtBackend(name, bundle, manifest, threads)

    return BackendEntry(name, runs_on, install, unavailable, create)


def _trt_unavailable() -> str | None:
    return _engine("trt_backend").unavailable()


def _trt_create(bundle: Path, manifest: Manifest, log: Log | None, threads: int | None):
    return _engine("trt_backend").TrtBackend(bundle, manifest, log)


def _trt_ready(bundle: Path, manifest: Manifest) -> bool:
    return _engine("trt_backend").engines_ready(bundle, manifest)


REGISTRY: tuple[BackendEntry, ...] = (
    BackendEntry(
        "tensorrt",
        "native TensorRT engines (GPU)",
        "pip install 'lgcvd[tensorrt]'",
        _trt_unavailable,
        _trt_create,
        _trt_ready,
    ),
    _ort_entry(
        "onnxruntime-tensorrt",
        "onnxruntime, TensorRT execution provider (GPU)",
        "pip install onnxruntime-gpu tensorrt",
    ),
    _ort_entry(
        "onnxruntime-cuda",
        "onnxruntime, CUDA execution provider (GPU)",
        "pip install onnxruntime-gpu",
    ),
    _ort_entry("onnxruntime", "onnxruntime, CPU execution provider", "pip install onnxruntime"),
)
ENTRIES = {e.name: e for e in REGISTRY}
NAMES = tuple(ENTRIES)  # fastest first: the order `auto` tries
CHOICES = (AUTO, *NAMES)


def unavailable(name: str) -> str | None:
    """None if backend `name` can run on this machine, else the reason it cannot."""
    return ENTRIES[name].unavailable()


def availability() -> dict[str, str | None]:
    """Every backend -> None (usable here) or the reason it is not; for `lgcvd-run info`."""
    return {e.name: e.unavailable() for e in REGISTRY}


def _create(entry: BackendEntry, bundle: Path, manifest: Manifest, log, threads) -> Backend:
    reason = entry.unavailable()
    if reason is not None:
        raise BackendError(
            f"backend {entry.name} is unavailable ({reason}); {entry.install} "
            "or choose --backend auto"
        )
    return entry.create(bundle, manifest, log, threads)


def load_backend(
    name: str,
    bundle: Path,
    manifest: Manifest,
    log: Log | None = None,
    threads: int | None = None,
) -> Backend:
    """Build backend `name` (or the fastest that starts, for "auto") on a loaded bundle.

    `log` receives one-line notes: which backend `auto` chose and why it skipped the others.
    `threads` caps the CPU threads of onnxruntime's CPU work (None: one per physical core).
    """
    if name not in CHOICES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    bundle = Path(bundle)
    if name != AUTO:
        return _create(ENTRIES[name], bundle, manifest, log, threads)
    skipped = []
    for entry in REGISTRY:
        if entry.unavailable() is not None or not entry.auto_ready(bundle, manifest):
            skipped.append(entry.name)
            continue
        try:
            backend = entry.create(bundle, manifest, log, threads)
        except BackendError:
            if entry is REGISTRY[-1]:  # the CPU fallback failing is the bundle's fault: say so
                raise
            skipped.append(entry.name)
            continue
        if log is not None:
            note = (
                f"; not usable here: {', '.join(skipped)} (see lgcvd-run info)" if skipped else ""
            )
            log(f"backend: {entry.name} (auto{note})")
        return backend
    raise BackendError(
        f"no backend can run here ({', '.join(skipped)}); {ENTRIES['onnxruntime'].install}"
    )

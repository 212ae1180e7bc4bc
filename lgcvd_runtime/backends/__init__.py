"""Inference backends: the registry, `auto` selection and loading (design.md Runtime; style.md 9).

A backend runs a bundle's two graphs behind the pipeline's protocol (`encode`, `denoise`) and
counts its calls in `calls`. Each engine has its own module, which alone imports its engine
package; this module asks each whether it can run here, and why not, and builds the chosen one.
`auto` tries them fastest first: native TensorRT (only when this machine's engines are already
built), onnxruntime's TensorRT, CUDA and CPU execution providers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.errors import BackendError
from lgcvd_runtime.pipeline import Backend

from . import ort_backend, trt_backend

AUTO = "auto"


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend: what it runs on and what to install when it is missing."""

    name: str
    runs_on: str
    install: str


ENTRIES = {
    e.name: e
    for e in (
        BackendEntry("tensorrt", "native TensorRT engines (GPU)", trt_backend.INSTALL),
        BackendEntry(
            "onnxruntime-tensorrt",
            "onnxruntime, TensorRT execution provider (GPU)",
            "pip install onnxruntime-gpu tensorrt",
        ),
        BackendEntry(
            "onnxruntime-cuda",
            "onnxruntime, CUDA execution provider (GPU)",
            "pip install onnxruntime-gpu",
        ),
        BackendEntry(
            "onnxruntime", "onnxruntime, CPU execution provider", "pip install onnxruntime"
        ),
    )
}
NAMES = tuple(ENTRIES)  # fastest first: the order `auto` tries
CHOICES = (AUTO, *NAMES)


def unavailable(name: str) -> str | None:
    """None if backend `name` can run on this machine, else the reason it cannot."""
    if name == "tensorrt":
        return trt_backend.unavailable()
    return ort_backend.unavailable(name)


def availability() -> dict[str, str | None]:
    """Every backend -> None (usable here) or the reason it is not; for `lgcvd-run info`."""
    return {name: unavailable(name) for name in NAMES}


def _create(name: str, bundle: Path, manifest: Manifest, log, threads: int | None) -> Backend:
    reason = unavailable(name)
    if reason is not None:
        raise BackendError(
            f"backend {name} is unavailable ({reason}); {ENTRIES[name].install} "
            "or choose --backend auto"
        )
    if name == "tensorrt":
        return trt_backend.TrtBackend(bundle, manifest, log)
    return ort_backend.OrtBackend(name, bundle, manifest, threads)


def load_backend(
    name: str,
    bundle: Path,
    manifest: Manifest,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> Backend:
    """Build backend `name` (or the fastest that starts, for "auto") on a loaded bundle.

    `log` receives one-line notes: which backend `auto` chose and why it skipped the others.
    `threads` caps the CPU threads of onnxruntime's CPU work (None: one per physical core).
    """
    if name not in CHOICES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    if name != AUTO:
        return _create(name, Path(bundle), manifest, log, threads)
    skipped = []
    for candidate in NAMES:
        if candidate == "tensorrt" and not trt_backend.engines_ready(Path(bundle), manifest):
            skipped.append(candidate)
            continue
        if unavailable(candidate) is not None:
            skipped.append(candidate)
            continue
        try:
            backend = _create(candidate, Path(bundle), manifest, log, threads)
        except BackendError:
            if candidate == NAMES[-1]:  # the CPU fallback failing is the bundle's fault: say so
                raise
            skipped.append(candidate)
            continue
        if log is not None:
            note = (
                f"; not usable here: {', '.join(skipped)} (see lgcvd-run info)" if skipped else ""
            )
            log(f"backend: {candidate} (auto{note})")
        return backend
    raise BackendError(
        f"no backend can run here ({', '.join(skipped)}); {ENTRIES['onnxruntime'].install}"
    )

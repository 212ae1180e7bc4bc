"""The backend protocol and the shape of a registry entry (docs/design.md, "The runtime's layers").

A backend runs a bundle's two graphs: `encode` once per window, `denoise` once per sampler step,
both on host numpy arrays with a leading batch axis. It counts its calls in `calls` and frees its
sessions or engines in `close()`. The pipeline, the torch reference (`lgcvd_train.torch_backend`)
and the Triton client backend all fit this protocol; `GraphCallBackend` writes `encode` and
`denoise` once for the backends whose engine runs one graph per call (onnxruntime, Triton's BLS).
A `BackendEntry` says what one registered backend runs on, how to install it, how to tell whether
it can run here and how to build it; the registry itself is `lgcvd_runtime.backends.REGISTRY`. No
engine package is imported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lgcvd_runtime.bundle import Manifest

Log = Callable[[str], None]


class Backend(Protocol):
    name: str
    calls: dict[str, int]  # {"encode": n, "denoise": n} since the backend was built

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        """(B, 3N, H, W) previous window estimate or U -> context tensors (none for a model
        without global context)."""

    def denoise(self, x_t, t, cond, context: tuple[np.ndarray, ...]) -> np.ndarray:
        """x_t (B, 3N, H, W), t (B,) float32, cond (B, 4K, H, W) -> model output (B, 3N, H, W)
        float32."""

    def close(self) -> None:
        """Free sessions, engines and device memory; the backend is unusable afterwards."""


class GraphCallBackend(ABC):
    """The `Backend` protocol for an engine that runs one graph per call: a subclass names itself
    and says how to run a graph (`_run`); the call counts and the graphs' roles are here."""

    name: str

    def __init__(self, graphs: Collection[str]):
        self.calls = {"encode": 0, "denoise": 0}
        self._has_context = "context" in graphs

    @abstractmethod
    def _run(self, graph: str, arrays) -> list[np.ndarray]:
        """The outputs of `graph` on `arrays` (its inputs in order, checked and cast against the
        manifest by `graph_io.prepare_inputs`)."""

    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        """(B, 3N, H, W) -> context tensors (ctx_k0, ctx_v0, ...) in the graph's dtype; none
        for a model without global context (no context graph)."""
        self.calls["encode"] += 1
        if not self._has_context:
            return ()
        return tuple(self._run("context", (prev,)))

    def denoise(self, x_t, t, cond, context) -> np.ndarray:
        """x_t (B, 3N, H, W), t (B,), cond (B, 4K, H, W), context -> output (B, 3N, H, W) float32."""
        self.calls["denoise"] += 1
        (out,) = self._run("denoiser", (x_t, t, cond, *context))
        return out.astype(np.float32, copy=False)


def _always(bundle: Path, manifest: Manifest) -> bool:
    return True


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend.

    `unavailable()` is None where the backend can run on this machine, else the reason;
    `create(bundle, manifest, log, threads)` builds it; `auto_ready(bundle, manifest)` says
    whether `auto` may pick it without a long first build (TensorRT: only with engines built).
    """

    name: str
    runs_on: str
    install: str
    unavailable: Callable[[], str | None]
    create: Callable[[Path, Manifest, Log | None, int | None], Backend]
    auto_ready: Callable[[Path, Manifest], bool] = _always

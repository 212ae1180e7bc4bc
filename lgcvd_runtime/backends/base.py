"""The backend protocol and the shape of a registry entry (docs/design.md, "The runtime's layers").

A backend runs a bundle's two graphs: `encode` once per window, `denoise` once per sampler step,
both on host numpy arrays with a leading batch axis. It counts its calls in `calls` and frees its
sessions or engines in `close()`. The pipeline, the torch reference (`lgcvd_train.torch_backend`)
and the Triton client backend all fit this protocol. A `BackendEntry` says what one registered
backend runs on, how to install it, how to tell whether it can run here and how to build it; the
registry itself is `lgcvd_runtime.backends.REGISTRY`. No engine package is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
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

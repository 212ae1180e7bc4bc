"""lgcvd's torch-free runtime: run exported LGC-VD bundles with numpy, onnxruntime and PyAV.

    import lgcvd_runtime
    model = lgcvd_runtime.load("model.lgcvd")          # see lgcvd_runtime.api
    for window in model.predict(frames, n=28): ...
    with model.live(p=2, n=6) as live: ...              # see lgcvd_runtime.live

The embedding API is imported on first use, so that `lgcvd_runtime.schedule` and the other
shared tables stay cheap to import for the training side.
"""

from __future__ import annotations

from lgcvd_runtime.errors import (
    BackendError,
    BundleError,
    LgcvdError,
    NonFiniteError,
    OutputExistsError,
    VideoError,
)

# name -> the module that defines it, imported on first use
_LAZY = {
    "load": "api",
    "Model": "api",
    "PredictedWindow": "api",
    "Stream": "api",
    "default_bundle": "api",
    "LiveStream": "live",
    "Forecast": "live",
    "ForecastFailed": "live",
    "StreamEnded": "live",
}

__all__ = [
    *_LAZY,
    "LgcvdError",
    "BackendError",
    "BundleError",
    "NonFiniteError",
    "OutputExistsError",
    "VideoError",
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lgcvd_runtime' has no attribute {name!r}")

"""lgcvd's torch-free runtime: run exported LGC-VD bundles with numpy, onnxruntime and PyAV.

    import lgcvd_runtime
    model = lgcvd_runtime.load("model.lgcvd")          # see lgcvd_runtime.api
    for window in model.predict(frames, n=28): ...

The embedding API is imported on first use, so that `lgcvd_runtime.schedule` and the other
shared tables stay cheap to import for the training side.
"""

from __future__ import annotations

from .errors import BackendError, BundleError, LgcvdError, OutputExistsError, VideoError

_API = ("load", "Model", "PredictedWindow", "Stream", "default_bundle")

__all__ = [*_API, "LgcvdError", "BackendError", "BundleError", "OutputExistsError", "VideoError"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lgcvd_runtime' has no attribute {name!r}")

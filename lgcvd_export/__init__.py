"""lgcvd export side: a training checkpoint -> a versioned model bundle (docs/design.md, Bundle).

`graphs` exports the two ONNX graphs, `precision` makes their fp16 variant, `parity` is the gate
that compares them with torch, `bundle_writer` assembles the bundle atomically, `trt_build`
prebuilds TensorRT engines and `cli` is `lgcvd-export`.

Importing the package imports nothing heavy: `lgcvd-export` must start, and say what to install,
where torch and onnx are missing; the two names below are loaded on first use.
"""

__all__ = ["ExportOptions", "export_bundle"]


def __getattr__(name: str):
    if name in __all__:
        from . import bundle_writer

        return getattr(bundle_writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

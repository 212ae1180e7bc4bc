"""lgcvd export side: a training checkpoint -> a versioned model bundle (design.md "Bundle").

`graphs` exports the two ONNX graphs, `precision` makes their fp16 variant, `parity` is the gate
that compares them with torch, `bundle_writer` assembles the bundle atomically, `trt_build`
prebuilds TensorRT engines and `cli` is `lgcvd-export`.
"""

from .bundle_writer import ExportOptions, export_bundle

__all__ = ["ExportOptions", "export_bundle"]

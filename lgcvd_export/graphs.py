"""The bundle's two ONNX graphs, traced from an `LGCVD` model (docs/design.md, Bundle; paper §3.2).

`context.onnx` is exactly `LGCVD.context`: the sequence encoder and the K/V projections of every
cross-attention, i.e. everything that depends only on the previous window and so runs once per
window. `denoiser.onnx` is `LGCVD.denoise`: (x_t, t, cond, ctx_k0, ctx_v0, ...) -> out. Names,
dtypes and symbolic shapes come from `lgcvd_runtime.bundle.graph_io`; the batch axis is dynamic.
A model without context (cfg.context False) has no context graph: its denoiser takes no ctx input.

Exporter: `torch.onnx.export(dynamo=False)` (TorchScript). Against `dynamo=True` on the `small`
preset it exports in ~4 s instead of ~16-21 s and gives a smaller file (8.1 vs 9.0 MB) at equal
onnxruntime speed (see the export report). `bind_fields` writes the manifest's bound fields into
a finished graph's metadata (`lgcvd_runtime.bundle`, module header). This module knows nothing
about precision or gates.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from lgcvd_runtime.bundle import BATCH, TensorSpec, graph_io
from lgcvd_train.model import LGCVD

EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"
TRACE_BATCH = 2  # not 1, so that no size-1 batch can be specialised into the graph

GraphIO = tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]  # (inputs, outputs)


class ContextGraph(nn.Module):
    """prev (B, 3N, H, W) -> (K0, V0, K1, V1, ...), each (B, heads, Lz, d)."""

    def __init__(self, model: LGCVD):
        super().__init__()
        self.model = model

    def forward(self, prev: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.context(prev)


class DenoiserGraph(nn.Module):
    """(x_t (B, 3N, H, W), t (B,), cond (B, 4K, H, W), *context) -> out (B, 3N, H, W)."""

    def __init__(self, model: LGCVD):
        super().__init__()
        self.model = model

    def forward(self, x_t, t, cond, *context: torch.Tensor) -> torch.Tensor:
        return self.model.denoise(x_t, t, cond, context)


def graph_specs(model: LGCVD) -> dict[str, GraphIO]:
    """Graph name -> (inputs, outputs); "context" only when the model has a sequence encoder."""
    cfg = model.cfg
    prev = torch.zeros(1, cfg.window_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        context = model.context(prev)
    shapes = [tuple(c.shape[1:]) for c in context]
    ctx_in, ctx_out, den_in, den_out = graph_io(cfg, shapes)
    specs = {"context": (ctx_in, ctx_out)} if ctx_out else {}
    specs["denoiser"] = (den_in, den_out)
    return specs


def example_input(spec: TensorSpec, batch: int, gen: torch.Generator) -> torch.Tensor:
    shape = tuple(batch if d == BATCH else int(d) for d in spec.shape)
    if spec.name == "t":
        return torch.rand(shape, generator=gen) * 999.0  # original-grid timesteps
    return torch.randn(shape, generator=gen)


def export_graph(module: nn.Module, io: GraphIO, path: Path, opset: int) -> None:
    """Trace `module` into `path` with a dynamic batch axis; the ONNX checker must accept it."""
    inputs, outputs = io
    gen = torch.Generator().manual_seed(0)
    args = tuple(example_input(t, TRACE_BATCH, gen) for t in inputs)
    dynamic = {
        t.name: {i: BATCH for i, d in enumerate(t.shape) if d == BATCH} for t in (*inputs, *outputs)
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=[t.name for t in inputs],
            output_names=[t.name for t in outputs],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def export_model(model: LGCVD, directory: Path, opset: int) -> dict[str, GraphIO]:
    """Write `{name}.onnx` for each graph of `model` into `directory`; return their I/O specs."""
    model = model.eval()
    modules = {"context": ContextGraph(model), "denoiser": DenoiserGraph(model)}
    specs = graph_specs(model)
    for name, io in specs.items():
        export_graph(modules[name], io, directory / f"{name}.onnx", opset)
    return specs


def bind_fields(path: Path, fields: dict[str, str]) -> None:
    """Record `fields` (`lgcvd_runtime.bundle.bound_fields`) in the graph's metadata_props,
    keeping its other entries; last, once the graph's precision conversions are done."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, **fields})
    onnx.save(model, str(path))

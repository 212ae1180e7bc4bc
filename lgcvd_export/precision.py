"""fp16 graphs: weights and arithmetic in float16, numerically sensitive parts kept in float32.

Kept in float32: normalisation (GroupNorm is exported as InstanceNormalization + affine), means,
softmax, and the whole sinusoidal time embedding up to its Sin/Cos. The embedding's argument
t * freq reaches ~1000, where float16 has a spacing of 0.5, so computing it in float16 would move
the phase by up to a radian; the nodes that depend on the input `t` before Sin/Cos, and the
constants they read, are therefore blocked by name. Graph inputs and outputs stay float32, so the
manifest's I/O is the same for both precisions. Knows nothing about torch or the model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
from onnxconverter_common.float16 import convert_float_to_float16

FP32_OPS = (
    "InstanceNormalization",
    "GroupNormalization",
    "LayerNormalization",
    "ReduceMean",
    "Softmax",
    "Sin",
    "Cos",
    "Exp",
    "Pow",
    "Sqrt",
    "Range",
)
TIME_INPUT = "t"
SINUSOID = ("Sin", "Cos")
FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def time_embedding_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes computing from `t` up to (not including) Sin/Cos, and of the Constant
    nodes read only by them. Relies on ONNX's topological node order."""
    from_t = {TIME_INPUT}
    names: set[str] = set()
    for node in graph.node:
        if node.op_type not in SINUSOID and from_t.intersection(node.input):
            from_t.update(node.output)
            names.add(node.name)
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name)
    for node in graph.node:
        if node.op_type == "Constant" and readers.get(node.output[0], {""}) <= names:
            names.add(node.name)
    assert all(names), "every blocked node needs a name"
    return sorted(names)


def float32_casts(graph: onnx.GraphProto) -> list[str]:
    """Names of Cast-to-float32 nodes (t.float(), the attention scale 1/sqrt(d) computed from a
    shape). The converter keeps a Cast's target type, so they must stay in the float32 part."""
    return [n.name for n in graph.node if is_cast(n, FLOAT)]


def is_cast(node: onnx.NodeProto, to: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def drop_half_round_trips(graph: onnx.GraphProto) -> None:
    """Bypass Cast(fp16) -> Cast(fp32) pairs. The converter puts one between two float32 nodes
    when a tensor has several readers (here the time-embedding phase, read by Sin and Cos), which
    rounds it to float16 after all; readers get the float32 tensor instead, dead casts go."""
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    alias = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if is_cast(node, FLOAT) else None
        if source is not None and is_cast(source, FLOAT16) and node.output[0] not in outputs:
            alias[node.output[0]] = source.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    read = {i for n in graph.node for i in n.input} | outputs
    dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]
    while dead:
        for node in dead:
            graph.node.remove(node)
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]


def to_fp16(path: Path) -> None:
    """Convert the ONNX graph at `path` to float16 in place (float32 inputs and outputs)."""
    model = onnx.load(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes on tiny weights rounded to float16's range
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=list(FP32_OPS),
            node_block_list=time_embedding_nodes(model.graph) + float32_casts(model.graph),
        )
    drop_half_round_trips(converted.graph)
    onnx.save(converted, str(path))
    onnx.checker.check_model(str(path))

"""The nodes ONNX Runtime executes, and the key a latency table gives each (paper §5.3).

ONNX Runtime does not execute the ONNX graph as written (see `operators`), so a table is keyed by the
**executed** nodes:

    key = domain-qualified op type | input shapes | output shapes | attributes

e.g. `com.microsoft.nchwc.Conv|in=1x64x56x56,64x64x3x3,64|out=1x64x56x56|activation=Relu,…`. A node's *op
class* (op type + kernel size, group kind, strides, fused activation) and *work* (MACs, or elements moved
for ops without MACs) are what an unseen key is interpolated by (`node_times`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

_CONV_OPS = frozenset({"Conv", "FusedConv", "ConvInteger", "NhwcConv", "NhwcFusedConv"})
_MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "FusedGemm"})


@dataclass(frozen=True)
class ExecutedNode:
    """One node ONNX Runtime executes (after its graph optimizations), with what the table keys it by."""

    name: str
    op: str
    """Domain-qualified op type (`com.microsoft.nchwc.Conv`; plain `Gemm` in the default domain)."""
    key: str
    """op | input shapes | output shapes | attributes: the table's exact key."""
    op_class: str
    """op + shape-independent attributes (kernel, group kind, strides, activation): the interpolation class."""
    work_kind: str
    """`macs` for ops with a MAC rule, else `elements` (input + output elements)."""
    work: float
    """MACs, or elements moved, of one execution: what unseen shapes are interpolated by."""
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    elements: float = 0.0
    """Elements of every input and output (weights included): the memory-traffic term of the fallback model."""


@dataclass(frozen=True)
class ExecutionGraph:
    """The nodes ONNX Runtime runs for a model at one batch size, in execution order, with their edges."""

    batch_size: int
    optimization_level: str
    nodes: tuple[ExecutedNode, ...]


def executed_node(name: str, args: Mapping[str, Any], proto: onnx.NodeProto | None) -> ExecutedNode:
    """One executed node with its table key: from its profiler event's `args` (op name, input and output
    shapes) and its node in the optimized graph (domain, attributes, edges; None when the saved graph lacks it)."""
    op_type = args.get("op_name", proto.op_type if proto is not None else "?")
    domain = proto.domain if proto is not None else ""
    op = f"{domain}.{op_type}" if domain not in ("", "ai.onnx") else op_type
    inputs = [_shape_of(item) for item in args.get("input_type_shape", [])]
    outputs = [_shape_of(item) for item in args.get("output_type_shape", [])]
    attributes = _attributes(proto) if proto is not None else {}
    work_kind, work = _work(op_type, inputs, outputs, attributes)
    return ExecutedNode(
        name=name,
        op=op,
        key=f"{op}|in={_shapes_text(inputs)}|out={_shapes_text(outputs)}|{_attributes_text(attributes)}",
        op_class=_op_class(op, op_type, inputs, attributes),
        work_kind=work_kind,
        work=work,
        elements=_elements(op_type, inputs, outputs, work),
        inputs=tuple(proto.input) if proto is not None else (),
        outputs=tuple(proto.output) if proto is not None else (),
    )


def _shape_of(item: dict) -> tuple[int, ...]:
    return tuple(int(d) for d in next(iter(item.values()), []))


def _shapes_text(shapes: list[tuple[int, ...]]) -> str:
    return ",".join("x".join(str(d) for d in shape) or "scalar" for shape in shapes)


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in node.attribute:
        if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.TENSOR):
            continue
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, list):
            value = tuple(v.decode(errors="replace") if isinstance(v, bytes) else v for v in value)
        values[attribute.name] = value
    return dict(sorted(values.items()))


def _attributes_text(attributes: Mapping[str, object]) -> str:
    return ",".join(f"{k}={_value_text(v)}" for k, v in attributes.items())


def _value_text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + " ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _op_class(op: str, op_type: str, inputs: list[tuple[int, ...]], attributes: Mapping[str, object]) -> str:
    """Op type + the attributes that do not scale with tensor sizes: nodes whose time grows with MACs alike."""
    if op_type in _CONV_OPS and len(inputs) >= 2 and len(inputs[0]) >= 3:
        kernel = attributes.get("kernel_shape") or inputs[1][2:]
        group = int(attributes.get("group", 1))  # type: ignore[call-overload]
        channels = inputs[0][1]
        kind = "dense" if group == 1 else ("depthwise" if group == channels else "grouped")
        parts = [
            f"kernel={_value_text(tuple(kernel))}",
            f"group={kind}",
            f"strides={_value_text(tuple(attributes.get('strides', ())))}",  # type: ignore[arg-type]
            f"activation={attributes.get('activation', '')}",
            f"sum={len(inputs) > 3}",
        ]
        return f"{op}|" + ",".join(parts)
    if op_type in _MATMUL_OPS:
        return f"{op}|activation={attributes.get('activation', '')},bias={len(inputs) > 2}"
    shape_free = {k: v for k, v in attributes.items() if k not in ("pads", "axes", "perm", "shape", "split")}
    return f"{op}|{_attributes_text(shape_free)}"


def _elements(op_type: str, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], work: float) -> float:
    """Elements a node reads and writes. The profiler leaves out weights ONNX Runtime has pre-packed (Gemm,
    MatMul), so a matrix product counts A, Y and the K × N weight from its shapes."""
    moved = float(sum(math.prod(x) for x in inputs) + sum(math.prod(x) for x in outputs))
    if op_type in _MATMUL_OPS and inputs and outputs and outputs[0]:
        rows = math.prod(outputs[0][:-1]) or 1
        weight = work / rows  # K × N
        listed = sum(math.prod(x) for x in inputs[1:])
        moved += max(weight - listed, 0.0)
    return moved


def _work(
    op_type: str, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], attributes: Mapping[str, object]
) -> tuple[str, float]:
    """MACs of the executed node when it has a MAC rule (as in `static.static_profile`), else elements moved."""
    out = math.prod(outputs[0]) if outputs else 0
    if op_type in _CONV_OPS and len(inputs) >= 2 and inputs[1]:
        return "macs", float(out * math.prod(inputs[1][1:]))
    if op_type == "QLinearConv" and len(inputs) >= 4:
        return "macs", float(out * math.prod(inputs[3][1:]))
    if op_type == "ConvTranspose" and len(inputs) >= 2:
        return "macs", float(math.prod(inputs[0]) * math.prod(inputs[1][1:]))
    if op_type in _MATMUL_OPS and inputs and inputs[0]:
        a = inputs[0]
        inner = a[0] if op_type in ("Gemm", "FusedGemm") and attributes.get("transA", 0) else a[-1]
        return "macs", float(out * inner)
    return "elements", float(sum(math.prod(s) for s in inputs) + sum(math.prod(s) for s in outputs))

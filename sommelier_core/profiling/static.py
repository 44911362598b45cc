"""Static cost of an ONNX model (design §5, paper §5.3): params, MACs, weight and peak-activation bytes.

The static profile is device-independent and comes from ONNX shape inference after every symbolic
dimension has been fixed (the batch dimension from `batch_size`, any other one from `input_shapes`;
`inferred_graph`). It reports:

- **params** and **weight_bytes**: the constant tensors that the running computation reads, i.e.
  initializers, `Constant` node values, and tensors computed only from those (ONNX Runtime folds them
  when it loads the model, so e.g. a weight built by `ConstantOfShape` or transposed once counts once,
  in the form the compute op reads). Only floating-point and 8/4-bit integer (quantized) tensors are
  weights; int64/int32/bool constants are shapes, axes and indices. A `DequantizeLinear` of constants (a
  QDQ graph's weight) counts as the int8 tensor, scale and zero point it reads, as stored.
  BatchNormalization's running mean and variance are stored weights and count; **bn_statistics** says how
  many of the params they are, since `torch`'s parameter count (and torchvision's published figures)
  leave them out as buffers:
  `params - bn_statistics` is that count (Caffe2 DenseNet-121: 8,146,152 − 167,296 = 7,978,856,
  torchvision's figure exactly).
- **macs**: multiply-accumulates of one forward pass at `batch_size`, by the rules in `macs` (those
  published figures use). An op that does compute but has no rule (TopK, Loop, RoiAlign, custom-domain
  ops, …) is listed in `StaticProfile.uncosted_ops` and warned about (`UncostedOpsWarning`), never
  silently counted as zero. Nodes whose inputs are all constant are folded at load time and cost
  nothing. **flops** is `2 × macs` by convention.
- **peak_activation_bytes**: the most bytes held at once by live tensors while the nodes run in the
  graph's (topological) order: graph inputs and every node output count from when they are produced
  until their last reader (graph outputs until the end); constants do not count, and no in-place
  buffer reuse is assumed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from sommelier_core.profiling.inferred_graph import inferred_graph, tensor_types
from sommelier_core.profiling.macs import DEFAULT_DOMAINS, MAC_RULES, ZERO_MAC_OPS
from sommelier_core.profiling.shapes import Shape, UnprofilableModel


class UncostedOpsWarning(UserWarning):
    """A model holds ops that do compute but have no MAC rule, so its MAC count is a lower bound."""


@dataclass(frozen=True)
class StaticProfile:
    """Device-independent cost of one forward pass, from the graph and its inferred shapes."""

    params: int
    """Elements of the weight tensors the computation reads (float and quantized constants)."""
    macs: int
    """Multiply-accumulates of one forward pass at `batch_size`, by the rules in `macs`."""
    flops: int
    """Floating-point operations, stated as `2 × macs`."""
    weight_bytes: int
    """Bytes of those weight tensors, at their stored dtypes."""
    peak_activation_bytes: int
    """Peak bytes of live non-constant tensors (graph inputs included) over the topological order."""
    batch_size: int
    """Batch size the MACs and activations are computed at."""
    macs_by_op_type: tuple[tuple[str, int], ...]
    """MACs per op type that has a MAC rule, largest first."""
    uncosted_ops: tuple[str, ...]
    """Op types (`domain.op` outside the default domain) that do compute but have no MAC rule."""
    bn_statistics: int = 0
    """Elements of `params` that are BatchNormalization running means and variances (buffers in torch)."""

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations: what a runtime holds at once at `batch_size`."""
        return self.weight_bytes + self.peak_activation_bytes


_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


_WEIGHT_DTYPES = frozenset(
    getattr(TensorProto, name)
    for name in (
        "FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1", "INT8", "UINT8", "INT4", "UINT4", "INT2", "UINT2",
    )
    if hasattr(TensorProto, name)
)  # fmt: skip
_SUB_BYTE_BITS = {
    getattr(TensorProto, name): bits
    for name, bits in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
    if hasattr(TensorProto, name)
}


def static_profile(
    model: onnx.ModelProto, batch_size: int = 1, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> StaticProfile:
    """Params, MACs, weight bytes and peak activation bytes of one forward pass at `batch_size`.

    A symbolic leading dimension of an input is set to `batch_size`; other symbolic dimensions must be
    given in `input_shapes` (input name → full shape, batch dimension included, taken as it is).
    Raises `UnprofilableModel` when a shape cannot be fixed or inferred, naming the input or tensor.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    graph = inferred_graph(model, batch_size, input_shapes or {})
    label = f"model {graph.name or '<unnamed>'!r}"
    types = tensor_types(graph)
    constants = _constant_tensors(graph)

    def shape_of(name: str, node: onnx.NodeProto | None = None) -> Shape:
        known = types.get(name)
        if known is None or known[1] is None:
            where = f" (output of {_describe(node)})" if node is not None else ""
            raise UnprofilableModel(
                f"{label}: shape of tensor {name!r}{where} is unknown after shape inference; "
                "fix its symbolic dimensions with input_shapes, or the op has no ONNX shape rule"
            )
        return known[1]

    def bytes_of(name: str, node: onnx.NodeProto | None = None) -> int:
        return _tensor_bytes(types[name][0] if name in types else 0, shape_of(name, node), name, label)

    weights = _weight_tensors(graph, constants, types)
    params = sum(math.prod(shape_of(name)) for name in weights)
    statistics = {
        name
        for node in graph.node
        if node.op_type == "BatchNormalization" and node.domain in DEFAULT_DOMAINS
        for name in node.input[3:5]
    }
    bn_statistics = sum(math.prod(shape_of(name)) for name in weights if name in statistics)
    weight_bytes = sum(bytes_of(name) for name in weights)

    read = _read_tensors(graph)
    macs_by_op: dict[str, int] = {}
    uncosted: list[str] = []
    for node in graph.node:
        if all(out in constants for out in node.output if out):
            continue
        for out in node.output:
            if out in read:
                shape_of(out, node)
        rule = MAC_RULES.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
        if rule is not None:
            macs_by_op[node.op_type] = macs_by_op.get(node.op_type, 0) + rule(node, shape_of)
        elif node.domain not in DEFAULT_DOMAINS or node.op_type not in ZERO_MAC_OPS:
            op_name = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
            if op_name not in uncosted:
                uncosted.append(op_name)
    if uncosted:
        warnings.warn(
            f"{label}: no MAC rule for op types {', '.join(uncosted)}; their MACs are not counted",
            UncostedOpsWarning,
            stacklevel=2,
        )

    macs = sum(macs_by_op.values())
    return StaticProfile(
        params=params,
        macs=macs,
        flops=2 * macs,
        weight_bytes=weight_bytes,
        peak_activation_bytes=_peak_activation_bytes(graph, constants, bytes_of),
        batch_size=batch_size,
        macs_by_op_type=tuple(sorted(macs_by_op.items(), key=lambda item: (-item[1], item[0]))),
        uncosted_ops=tuple(sorted(uncosted)),
        bn_statistics=bn_statistics,
    )


def _constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors known before any input arrives: initializers, `Constant` values, and deterministic functions of them."""
    constants = {init.name for init in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        foldable = (
            node.domain in DEFAULT_DOMAINS
            and node.op_type not in _RANDOM_OPS
            and not any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute)
            and (node.op_type == "Constant" or (inputs and all(name in constants for name in inputs)))
        )
        if foldable:
            constants.update(name for name in node.output if name)
    return constants


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names read by nodes inside the node's subgraphs (If/Loop/Scan bodies), recursively."""
    reads: set[str] = set()
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                reads.update(name for name in inner.input if name)
                reads |= _subgraph_reads(inner)
    return reads


def _reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads: its inputs and what its subgraphs read from the enclosing scope."""
    return {name for name in node.input if name} | _subgraph_reads(node)


def _read_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors some node reads or the graph returns; other outputs (e.g. Dropout's mask) are dead on arrival."""
    read = {out.name for out in graph.output}
    for node in graph.node:
        read |= _reads(node)
    return read


def _weight_tensors(
    graph: onnx.GraphProto, constants: set[str], types: Mapping[str, tuple[int, Shape | None]]
) -> list[str]:
    """Constant tensors of a weight dtype that a non-constant node reads, each once, in the form they are stored.

    A `DequantizeLinear` of constants (a QDQ graph's weight) counts as what it reads — the int8 tensor, its
    scale and zero point — not as its float output: ONNX Runtime keeps the quantized tensor (and fuses the
    pair into an integer kernel), so counting the float copy overstated QDQ models' weights about 4×.
    """
    stored_as = {
        out: [name for name in node.input if name]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.domain in DEFAULT_DOMAINS
        for out in node.output
        if out in constants
    }

    def stored(name: str) -> list[str]:
        return [found for source in stored_as[name] for found in stored(source)] if name in stored_as else [name]

    weights: dict[str, None] = {}
    for node in graph.node:
        if all(out in constants for out in node.output if out):
            continue
        for read in sorted(_reads(node)):
            if read not in constants:
                continue
            for name in stored(read):  # a dequantized one's int32 bias is a weight too
                if name in types and (types[name][0] in _WEIGHT_DTYPES or name != read):
                    weights[name] = None
    return list(weights)


def _peak_activation_bytes(graph: onnx.GraphProto, constants: set[str], bytes_of: Callable[..., int]) -> int:
    """Peak bytes of live non-constant tensors while the nodes run in graph order (no in-place reuse).

    Outputs that nothing reads are not counted: they are optional outputs ONNX Runtime frees at once.
    """
    nodes = [node for node in graph.node if not all(out in constants for out in node.output if out)]
    end = len(nodes)
    last_read: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in _reads(node):
            last_read[name] = index
    for out in graph.output:
        last_read[out.name] = end

    live: dict[str, int] = {}
    for vi in graph.input:
        if vi.name not in constants:
            live[vi.name] = bytes_of(vi.name)
    current = sum(live.values())
    peak = current
    for index, node in enumerate(nodes):
        for out in node.output:
            if out in last_read and out not in live:
                live[out] = bytes_of(out, node)
                current += live[out]
        peak = max(peak, current)
        for name in [name for name in live if last_read.get(name, -1) <= index]:
            current -= live.pop(name)
    return peak


def _tensor_bytes(elem_type: int, shape: Shape, name: str, label: str) -> int:
    """Bytes of a dense tensor, sub-byte types packed."""
    if elem_type in _SUB_BYTE_BITS:
        bits = _SUB_BYTE_BITS[elem_type]
    else:
        try:
            bits = helper.tensor_dtype_to_np_dtype(elem_type).itemsize * 8
        except (KeyError, ValueError, TypeError) as error:
            raise UnprofilableModel(f"{label}: tensor {name!r} has no known element type ({elem_type})") from error
    return math.ceil(math.prod(shape) * bits / 8)


def _describe(node: onnx.NodeProto) -> str:
    """How error messages name a node."""
    return f"{node.op_type} node {node.name!r}" if node.name else f"unnamed {node.op_type} node"

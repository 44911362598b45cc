"""Multiply-accumulates per op (paper §5.3), by the rules that published figures use (torchvision's model
metadata, fvcore, the original papers):

============================  ====================================================================
op                            MACs
============================  ====================================================================
Conv, ConvInteger,            output elements × (C_in / groups) × prod(kernel) — i.e.
QLinearConv (1-D, 2-D, 3-D,   `numel(Y) × prod(W.shape[1:])`; the bias is not counted
grouped, depthwise)
ConvTranspose                 input elements × (C_out / groups) × prod(kernel) =
                              `numel(X) × prod(W.shape[1:])`
Gemm                          M × K × N (`numel(Y) × K`); alpha, beta and C are not counted
MatMul, MatMulInteger,        `numel(Y) × K` with K the contracted dim, batch dims broadcast
QLinearMatMul
Einsum (≥ 2 operands)         product of the sizes of every distinct index × (operands − 1);
                              a single-operand Einsum (transpose, trace, sum) is 0
RNN, GRU, LSTM                seq_len × batch × (numel(W) + numel(R)): the input and recurrent
                              matrix products of every gate and direction; gate arithmetic and
                              biases are not counted
============================  ====================================================================

Elementwise ops, activations, normalizations (BatchNormalization, LayerNormalization, LRN, …), pooling,
Softmax, Resize, reductions, quantize/dequantize and data movement (Reshape, Concat, Gather, …) are
**0 MACs by rule** (`ZERO_MAC_OPS`): they are not multiply-accumulates, and published figures leave them out.
Any other op that does compute has no rule (`static.static_profile` lists and warns about it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import onnx

from sommelier_core.profiling.shapes import Shape

_DATA_MOVEMENT_OPS = frozenset(
    {
        "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
        "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Expand", "Tile",
        "Pad", "DepthToSpace", "SpaceToDepth", "Shape", "Size", "Cast", "CastLike", "Constant",
        "ConstantOfShape", "Range", "EyeLike", "Dropout", "Compress", "NonZero", "OneHot", "Trilu",
        "ReverseSequence", "CenterCropPad", "Col2Im",
    }
)  # fmt: skip
_ELEMENTWISE_OPS = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "BitwiseAnd",
        "BitwiseNot", "BitwiseOr", "BitwiseXor", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Div", "Elu",
        "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish",
        "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean", "Min", "Mish", "Mod",
        "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Shrink",
        "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Swish", "Tan",
        "Tanh", "ThresholdedRelu", "Where", "Xor", "QuantizeLinear", "DequantizeLinear",
        "DynamicQuantizeLinear",
    }
)  # fmt: skip
_NORMALIZATION_OPS = frozenset(
    {
        "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
        "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN",
    }
)  # fmt: skip
_POOLING_SOFTMAX_RESAMPLING_OPS = frozenset(
    {
        "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
        "MaxUnpool", "MaxRoiPool", "Softmax", "LogSoftmax", "Hardmax", "Resize", "Upsample",
    }
)  # fmt: skip
_REDUCTION_OPS = frozenset(
    {
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum",
    }
)  # fmt: skip

ZERO_MAC_OPS: frozenset[str] = (
    _DATA_MOVEMENT_OPS | _ELEMENTWISE_OPS | _NORMALIZATION_OPS | _POOLING_SOFTMAX_RESAMPLING_OPS | _REDUCTION_OPS
)
"""Default-domain ops counted as 0 MACs on purpose: not multiply-accumulates, left out of published figures."""


DEFAULT_DOMAINS = ("", "ai.onnx")
"""Domain names of the standard ONNX ops, the only ones the MAC rules and `ZERO_MAC_OPS` apply to."""


ShapeOf = Callable[[str], Shape]


def _conv_macs(weight_index: int) -> Callable[[onnx.NodeProto, ShapeOf], int]:
    """Conv family: output elements × (C_in / groups) × prod(kernel) = numel(Y) × prod(W.shape[1:])."""

    def rule(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
        return math.prod(shape_of(node.output[0])) * math.prod(shape_of(node.input[weight_index])[1:])

    return rule


def _conv_transpose_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """Every input element is multiplied into (C_out / groups) × prod(kernel) outputs."""
    return math.prod(shape_of(node.input[0])) * math.prod(shape_of(node.input[1])[1:])


def _gemm_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """M × K × N: each of the M × N outputs accumulates K products."""
    a = shape_of(node.input[0])
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    return math.prod(shape_of(node.output[0])) * (a[0] if trans_a else a[-1])


def _matmul_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """numel(Y) × K: each output accumulates K products, over the broadcast batch dims."""
    return math.prod(shape_of(node.output[0])) * shape_of(node.input[0])[-1]


def _einsum_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """Product of every distinct index size (one multiply per point of the joint index space) per extra operand."""
    operands = [name for name in node.input if name]
    if len(operands) < 2:
        return 0
    equation = next(attr.s.decode() for attr in node.attribute if attr.name == "equation").replace(" ", "")
    terms = equation.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    ellipsis: list[int] = []
    for term, name in zip(terms, operands, strict=True):
        shape = shape_of(name)
        letters = term.replace("...", "")
        n_ellipsis = len(shape) - len(letters)
        head = term.split("...")[0] if "..." in term else term
        for position, letter in enumerate(head):
            sizes[letter] = max(sizes.get(letter, 1), shape[position])
        if "..." in term:
            tail = term.split("...")[1]
            for position, letter in enumerate(tail):
                sizes[letter] = max(sizes.get(letter, 1), shape[len(head) + n_ellipsis + position])
            dims = list(shape[len(head) : len(head) + n_ellipsis])
            ellipsis = _broadcast(ellipsis, dims)
    return math.prod(sizes.values()) * math.prod(ellipsis) * (len(operands) - 1)


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Numpy broadcast of two shapes."""
    width = max(len(a), len(b))
    a, b = [1] * (width - len(a)) + list(a), [1] * (width - len(b)) + list(b)
    return [max(x, y) for x, y in zip(a, b, strict=True)]


def _recurrent_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """seq_len × batch × (numel(W) + numel(R)): input and recurrent products of all gates and directions."""
    x = shape_of(node.input[0])
    layout = next((attr.i for attr in node.attribute if attr.name == "layout"), 0)
    seq_len, batch = (x[1], x[0]) if layout else (x[0], x[1])
    return seq_len * batch * (math.prod(shape_of(node.input[1])) + math.prod(shape_of(node.input[2])))


MAC_RULES: dict[str, Callable[[onnx.NodeProto, ShapeOf], int]] = {
    "Conv": _conv_macs(1),
    "ConvInteger": _conv_macs(1),
    "QLinearConv": _conv_macs(3),
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
    "MatMulInteger": _matmul_macs,
    "QLinearMatMul": _matmul_macs,
    "Einsum": _einsum_macs,
    "RNN": _recurrent_macs,
    "GRU": _recurrent_macs,
    "LSTM": _recurrent_macs,
}

COSTED_OPS: frozenset[str] = frozenset(MAC_RULES)
"""Default-domain ops that have a MAC rule (see this module's docstring)."""

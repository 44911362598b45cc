"""The weight-change term of the layer-wise bound, computed exactly on the reference's own activations.

For an op that is affine in its activation input X with constants W (Conv, Gemm, MatMul, a
BatchNormalization, a multiplication by a constant), swapping W for M's W′ changes its output by

    W′X′ − WX = W′·(X′ − X) + (W′ − W)·X.

The first term is bounded by the op's Lipschitz constant times the incoming bound (`error_bound`).
The second involves nothing unknown: X is the reference model's activation at that op on the
sample, so ‖(W′ − W)·X‖ is evaluated exactly, per sample, by running the op itself with its
constants replaced by their differences (the op is linear in its constants). The paper bounds it by
σ_max(W′ − W)·‖X‖, which assumes every X lies along the top singular vector of the weight change;
on real activations that over-states the term 2–4×. The sum of the two terms is still a true upper
bound on the op's output difference (triangle inequality), and with an unchanged segment input
(X′ = X) the first op's difference is exact.

`difference_model` builds that op as a one-input ONNX model; `ActivationProbe` runs it on each
batch of the reference's activations and keeps only the per-sample norms.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.inference import node_attribute
from sommelier_core.segments.sequences import GraphView, activation_inputs, weight_inputs

DRIFT_INPUT = "x"
DRIFT_OUTPUT = "drift"
DRIFT_OPS = frozenset({"Conv", "Gemm", "MatMul", "BatchNormalization", "Mul", "Div"})
"""Ops whose weight-change term is computed exactly (each is affine in its activation input)."""


def difference_model(
    reference: GraphView, candidate: GraphView, name_n: str, name_m: str, input_rank: int
) -> onnx.ModelProto | None:
    """A model computing the op's weight-change term (W′ − W)·X (+ b′ − b) from its activation input X.

    `input_rank` is the rank of X without the batch axis (it shapes BatchNormalization's per-channel
    constants). None when the node pair is not of that form (then the bound is not assessable there).
    """
    node = reference.nodes[name_n]
    if node.op_type not in DRIFT_OPS or len(activation_inputs(reference, name_n)) != 1:
        return None
    theirs = dict(weight_inputs(candidate, name_m))
    mine = dict(weight_inputs(reference, name_n))
    if set(mine) != set(theirs):
        return None
    values = {
        k: (reference.constants[mine[k]].astype(np.float64), candidate.constants[theirs[k]].astype(np.float64))
        for k in mine
    }
    if any(w.shape != w2.shape or w.dtype.kind != "f" for w, w2 in values.values()):
        return None
    if node.op_type == "BatchNormalization":
        return _batch_norm_difference(node, values, input_rank)
    if node.op_type in ("Mul", "Div"):
        return _scale_difference(node, values)
    inputs, initializers = [], []
    for position, tensor in enumerate(node.input):
        if position in values:
            w, w2 = values[position]
            initializers.append(numpy_helper.from_array((w2 - w).astype(np.float32), f"d{position}"))
            inputs.append(f"d{position}")
        elif tensor:
            inputs.append(DRIFT_INPUT)
        else:
            inputs.append("")
    copy = helper.make_node(node.op_type, inputs, [DRIFT_OUTPUT], name="drift")
    copy.attribute.extend(node.attribute)
    return _model([copy], initializers, _opset(reference.model))


def _batch_norm_difference(
    node: onnx.NodeProto, values: dict[int, tuple[np.ndarray, np.ndarray]], input_rank: int
) -> onnx.ModelProto | None:
    """BatchNormalization is s·X + t per channel: its weight-change term is (s′ − s)·X + (t′ − t)."""
    if not all(k in values for k in (1, 2, 3, 4)):
        return None
    epsilon = float(node_attribute(node, "epsilon", 1e-5))
    s, t = batch_norm_affine(values, 0, epsilon)
    s2, t2 = batch_norm_affine(values, 1, epsilon)
    shape = (len(s), *([1] * max(input_rank - 1, 0)))
    initializers = [
        numpy_helper.from_array((s2 - s).reshape(shape).astype(np.float32), "ds"),
        numpy_helper.from_array((t2 - t).reshape(shape).astype(np.float32), "dt"),
    ]
    nodes = [
        helper.make_node("Mul", [DRIFT_INPUT, "ds"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "dt"], [DRIFT_OUTPUT], name="shift"),
    ]
    return _model(nodes, initializers)


def batch_norm_affine(
    values: dict[int, tuple[np.ndarray, np.ndarray]], index: int, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) of a BatchNormalization's per-channel affine map, of N's (index 0) or M's (index 1) constants."""
    scale, shift, mean, var = (values[k][index] for k in (1, 2, 3, 4))
    s = scale / np.sqrt(var + epsilon)
    return s, shift - s * mean


def _scale_difference(node: onnx.NodeProto, values: dict[int, tuple[np.ndarray, np.ndarray]]) -> onnx.ModelProto | None:
    """X·c (or X / c) changes by X·(c′ − c) (or X·(1/c′ − 1/c)); a constant divided by X is not linear."""
    if len(values) != 1:
        return None
    ((position, (c, c2)),) = values.items()
    if node.op_type == "Div":
        if position != 1 or np.any(c == 0) or np.any(c2 == 0):
            return None
        c, c2 = 1.0 / c, 1.0 / c2
    initializers = [numpy_helper.from_array((c2 - c).astype(np.float32), "dc")]
    return _model([helper.make_node("Mul", [DRIFT_INPUT, "dc"], [DRIFT_OUTPUT], name="scale")], initializers)


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "weight_change",
        [helper.make_tensor_value_info(DRIFT_INPUT, TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(DRIFT_OUTPUT, TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _opset(model: onnx.ModelProto) -> int:
    """The default-domain opset of the model a node is copied from (its attributes follow that version)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions[0] if versions else 17, 7)

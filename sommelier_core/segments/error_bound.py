"""Layer-wise output-difference bound through a segment pair (paper §4.2).

Replacing segment S_N of model N by S_M changes the segment's output by ΔX. With the segment's input
unchanged (ΔX_0 = 0), ‖ΔX‖ is bounded inductively, op by op, per input sample:

- **linear** (Conv, Gemm, MatMul with a constant weight): ΔX_{i+1} = W′ΔX_i + (W′ − W)X_i, so
  ‖ΔX_{i+1}‖ ≤ σ_max(W′)·‖ΔX_i‖ + σ_max(W′ − W)·‖X_i‖ (+ ‖b′ − b‖ over the output positions).
  A convolution is its kernel reshaped to the 2-D matrix K (C_out × C_in/groups·k) acting on the
  unfolded input (im2col), as the paper does; ‖unfold(X)‖ is measured exactly and
  ‖unfold(ΔX)‖ ≤ √r·‖ΔX‖, r the most windows reading one input value (r = 1 for a 1×1 conv), so
  the bound holds for the convolution as an operator. A grouped conv is block-diagonal: σ_max is
  the largest over groups;
- **activations** (ReLU, tanh, sigmoid, …) and **pooling** pass the bound (they are 1-Lipschitz;
  overlapping windows count √r; global average pooling scales it by 1/√(spatial size));
- **normalization** (BatchNormalization, an affine map per channel) scales it: max|s′|·‖ΔX‖ +
  max|s′ − s|·‖X‖ + ‖t′ − t‖;
- **multi-source**: add sums the branches' bounds, concat combines them in quadrature;
- anything else (attention products, unknown ops) makes the bound infinite: not assessable, never wrong.

X_i are the reference model's own activations on the samples (one ONNX Runtime pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from sommelier_core.inference import node_attribute, probe_session
from sommelier_core.segments.lcs import SegmentPair
from sommelier_core.segments.sequences import GraphView, Op, OpSequence, activation_inputs, weight_inputs

PASS_THROUGH = frozenset(
    {
        "Relu", "Tanh", "Sigmoid", "Softmax", "Softplus", "Softsign", "Clip", "Identity", "Dropout",
        "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "GlobalMaxPool", "Abs", "Neg",
        "Cast", "HardSigmoid", "HardSwish", "Elu", "Selu", "LeakyRelu",
    }
)  # fmt: skip
"""Ops that are 1-Lipschitz (in l2, per sample) or rearrange values: the difference bound passes through
(scaled by `_LIPSCHITZ` for the few whose slope exceeds 1)."""

# slopes above 1: Gelu's derivative peaks at ≈ 1.129; HardSwish's, (2x + 3)/6 on (−3, 3), approaches 1.5
_LIPSCHITZ = {"Gelu": 1.13, "Selu": 1.0507 * 1.6733, "HardSwish": 1.5}
_SUM_MERGES = frozenset({"Add", "Sub", "Reshape", "Expand", "Flatten", "Identity"})
_LINEAR = frozenset({"Conv", "Gemm", "MatMul"})


@dataclass(frozen=True)
class SegmentBound:
    """The bound on ‖ΔX‖ at a segment's output, per sample, with the reference's own output norms there."""

    per_sample: np.ndarray
    """Upper bound of ‖X′_out − X_out‖ for each input sample (inf when not assessable)."""
    output_norms: np.ndarray
    """‖X_out‖ of the reference on each sample."""

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.per_sample)))

    @property
    def max_bound(self) -> float:
        return float(np.max(self.per_sample)) if len(self.per_sample) else 0.0

    @property
    def relative_bound(self) -> float:
        """Mean over samples of bound / ‖X_out‖: the bound as a fraction of the signal it perturbs."""
        if not self.finite:
            return float("inf")
        return float(np.mean(self.per_sample / np.maximum(self.output_norms, 1e-12)))


class ActivationProbe:
    """Per-sample norms (and shapes) of the reference's activation tensors, from one batched ORT pass."""

    def __init__(self, view: GraphView, x: np.ndarray, tensors: set[str], batch_size: int = 1024) -> None:
        self.view = view
        self.norms: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.unfolded: dict[str, np.ndarray] = {}
        float_types = _float_tensors(view.model)
        conv_inputs = {
            name: activation_inputs(view, name)[0]
            for name, node in view.nodes.items()
            if node.op_type == "Conv" and activation_inputs(view, name) and activation_inputs(view, name)[0] in tensors
        }
        # only floating-point activations have a norm that matters (a Shape output is an integer vector)
        tensors = {t for t in tensors if float_types.get(t, True)}
        names = sorted(tensors - {view.input})
        session = probe_session(view.model, names) if names else None
        parts: dict[str, list[np.ndarray]] = {n: [] for n in tensors}
        unfolded_parts: dict[str, list[np.ndarray]] = {n: [] for n in conv_inputs}
        input_name = view.input
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            values = dict(zip(names, session.run(names, {input_name: batch}), strict=True)) if session else {}
            values[input_name] = batch
            for name in tensors:
                value = values[name].astype(np.float64)
                self.shapes[name] = tuple(value.shape[1:])
                parts[name].append(np.linalg.norm(value.reshape(len(value), -1), axis=1))
            for conv, tensor in conv_inputs.items():
                counts = window_counts(view.nodes[conv], values[tensor].shape[2:])
                squared = values[tensor].astype(np.float64) ** 2
                unfolded_parts[conv].append(np.sqrt((squared * counts).reshape(len(squared), -1).sum(axis=1)))
        self.norms = {n: np.concatenate(v) for n, v in parts.items()}
        self.unfolded = {n: np.concatenate(v) for n, v in unfolded_parts.items()}


def _float_tensors(model: onnx.ModelProto) -> dict[str, bool]:
    """Whether each tensor with an inferred type is floating-point (tensors shape inference misses are absent)."""
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        return {}
    graph = inferred.graph
    found = {}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        elem_type = value.type.tensor_type.elem_type
        if elem_type:
            found[value.name] = elem_type in floats
    return found


def window_counts(node: onnx.NodeProto, spatial: Sequence[int]) -> np.ndarray:
    """How many windows of a Conv/pool node read each input position (broadcastable to N, C, *spatial)."""
    rank = len(spatial)
    kernel = list(node_attribute(node, "kernel_shape", None) or [])
    if not kernel:
        return np.ones((1, 1, *spatial))
    strides = list(node_attribute(node, "strides", None) or [1] * rank)
    dilations = list(node_attribute(node, "dilations", None) or [1] * rank)
    pads = list(node_attribute(node, "pads", None) or [0] * (2 * rank))
    if node_attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        # SAME padding: count every window as if it could read every position (safe upper bound)
        reuse = float(np.prod([math.ceil(k / s) for k, s in zip(kernel, strides, strict=False)]))
        return np.full((1, 1, *spatial), reuse)
    per_axis = []
    for axis in range(rank):
        size, k, s, d = spatial[axis], kernel[axis], strides[axis], dilations[axis]
        begin, end = pads[axis], pads[axis + rank]
        out = (size + begin + end - d * (k - 1) - 1) // s + 1
        counts = np.zeros(size)
        for o in range(max(out, 0)):
            for t in range(k):
                position = o * s - begin + t * d
                if 0 <= position < size:
                    counts[position] += 1
        per_axis.append(counts)
    grid = per_axis[0]
    for counts in per_axis[1:]:
        grid = np.multiply.outer(grid, counts)
    return grid.reshape(1, 1, *spatial)


def activation_tensors(view: GraphView, segments: Sequence[SegmentPair]) -> set[str]:
    """The reference tensors the bound reads for these segments: each node's activation inputs and output."""
    tensors: set[str] = set()
    for segment in segments:
        tensors.add(segment.reference_output)
        for name in segment.reference_nodes:
            tensors.update(activation_inputs(view, name))
            tensors.update(view.nodes[name].output[:1])
    return tensors


class SegmentBounder:
    """Computes `SegmentBound`s for segments of a reference N swapped with a candidate M, on inputs `x`."""

    def __init__(self, reference: GraphView, candidate: GraphView, x: np.ndarray) -> None:
        self.ref = reference
        self.cand = candidate
        self.x = x
        self.probe: ActivationProbe | None = None

    def bounds(self, segments: Sequence[SegmentPair]) -> list[SegmentBound]:
        """One bound per segment, each with an unchanged segment input (ΔX_0 = 0)."""
        tensors = activation_tensors(self.ref, segments)
        self.probe = ActivationProbe(self.ref, np.asarray(self.x, dtype=np.float32), tensors)
        n = len(self.x)
        found = []
        for segment in segments:
            delta = np.zeros(n)
            for op_n, op_m in zip(segment.reference_ops, segment.candidate_ops, strict=True):
                delta = self._op(op_n, op_m, delta)
            found.append(SegmentBound(delta, self.probe.norms[segment.reference_output]))
        return found

    # --- the inductive step, per op -------------------------------------------------------------

    def _sequence(self, seq_n: OpSequence, seq_m: OpSequence, delta: np.ndarray) -> np.ndarray:
        for op_n, op_m in zip(seq_n.ops, seq_m.ops, strict=True):
            delta = self._op(op_n, op_m, delta)
        return delta

    def _op(self, op_n: Op, op_m: Op, delta: np.ndarray) -> np.ndarray:
        if op_n.key.startswith("Opaque:"):
            return np.full_like(delta, np.inf)
        if not op_n.is_block:
            return self._node(op_n.node, op_m.node, delta)
        branch_deltas = []
        for branch_n, branch_m in zip(op_n.branches, op_m.branches, strict=True):
            if branch_n.ops and branch_n.ops[0].op_type == "Shape":
                branch_deltas.append(np.zeros_like(delta))  # a shape does not depend on the values
            else:
                branch_deltas.append(self._sequence(branch_n, branch_m, delta))
        if op_n.merge is None:
            return np.full_like(delta, np.inf)
        merge_type = self.ref.nodes[op_n.merge].op_type
        if merge_type in _SUM_MERGES:
            combined = np.sum(branch_deltas, axis=0)
        elif merge_type == "Concat":
            combined = np.sqrt(np.sum(np.square(branch_deltas), axis=0))
        else:
            return np.full_like(delta, np.inf)
        return combined + self._constant_shift(op_n.merge, op_m.merge)

    def _node(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        node = self.ref.nodes[name_n]
        kind = node.op_type
        if kind in _LINEAR:
            return self._linear(name_n, name_m, delta)
        if kind == "BatchNormalization":
            return self._batch_norm(name_n, name_m, delta)
        if kind in PASS_THROUGH:
            if kind == "LeakyRelu" and abs(node_attribute(node, "alpha", 0.01)) > 1:
                return delta * abs(node_attribute(node, "alpha", 0.01))
            return delta * _LIPSCHITZ.get(kind, 1.0)
        if kind in _LIPSCHITZ:
            return delta * _LIPSCHITZ[kind]
        if kind in ("MaxPool", "AveragePool", "LpPool"):
            spatial = self.probe.shapes[activation_inputs(self.ref, name_n)[0]][1:]
            return delta * math.sqrt(float(np.max(window_counts(node, spatial))))
        if kind == "GlobalAveragePool":
            spatial = self.probe.shapes[activation_inputs(self.ref, name_n)[0]][1:]
            return delta / math.sqrt(float(np.prod(spatial)) or 1.0)
        if kind in ("Add", "Sub") and len(activation_inputs(self.ref, name_n)) == 1:
            return delta + self._constant_shift(name_n, name_m)
        if kind in ("Mul", "Div") and len(activation_inputs(self.ref, name_n)) == 1:
            return self._scale(name_n, name_m, delta)
        return np.full_like(delta, np.inf)

    def _weights(self, name_n: str, name_m: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(position, N's value, M's value) of the node pair's constant inputs."""
        theirs = dict(weight_inputs(self.cand, name_m))
        pairs = []
        for position, tensor in weight_inputs(self.ref, name_n):
            if tensor in self.ref.constants and theirs.get(position) in self.cand.constants:
                pairs.append(
                    (
                        position,
                        self.ref.constants[tensor].astype(np.float64),
                        self.cand.constants[theirs[position]].astype(np.float64),
                    )
                )
        return pairs

    def _input_norm(self, name_n: str) -> np.ndarray:
        return self.probe.norms[activation_inputs(self.ref, name_n)[0]]

    def _output_positions(self, name_n: str) -> float:
        shape = self.probe.shapes.get(self.ref.nodes[name_n].output[0])
        return float(np.prod(shape[1:])) if shape and len(shape) > 1 else 1.0

    def _linear(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        node = self.ref.nodes[name_n]
        weights = {position: (w, w2) for position, w, w2 in self._weights(name_n, name_m)}
        if node.op_type == "Conv":
            if 1 not in weights:
                return np.full_like(delta, np.inf)
            w, w2 = weights[1]
            groups = int(node_attribute(node, "group", 1))
            spatial = self.probe.shapes[activation_inputs(self.ref, name_n)[0]][1:]
            reuse = float(np.max(window_counts(node, spatial)))
            lipschitz = _grouped_sigma(w2, groups) * math.sqrt(reuse)
            drift = _grouped_sigma(w2 - w, groups) * self.probe.unfolded[name_n]
            bias = 0.0
            if 2 in weights:
                bias = float(np.linalg.norm(weights[2][1] - weights[2][0])) * math.sqrt(self._output_positions(name_n))
            return lipschitz * delta + drift + bias
        if node.op_type == "Gemm":
            alpha = float(node_attribute(node, "alpha", 1.0))
            beta = float(node_attribute(node, "beta", 1.0))
            position = 1 if 1 in weights else 0
            if position not in weights:
                return np.full_like(delta, np.inf)
            w, w2 = weights[position]
            lipschitz = abs(alpha) * _sigma(w2)
            drift = abs(alpha) * _sigma(w2 - w) * self._input_norm(name_n)
            bias = float(np.linalg.norm(beta * (weights[2][1] - weights[2][0]))) if 2 in weights else 0.0
            return lipschitz * delta + drift + bias
        # MatMul with exactly one constant operand
        if len(weights) != 1:
            return np.full_like(delta, np.inf)
        ((w, w2),) = weights.values()
        if w.ndim < 2:
            return np.full_like(delta, np.inf)
        return _sigma(w2) * delta + _sigma(w2 - w) * self._input_norm(name_n)

    def _batch_norm(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        weights = {position: (w, w2) for position, w, w2 in self._weights(name_n, name_m)}
        if not all(k in weights for k in (1, 2, 3, 4)):
            return np.full_like(delta, np.inf)
        epsilon = float(node_attribute(self.ref.nodes[name_n], "epsilon", 1e-5))

        def affine(index: int) -> tuple[np.ndarray, np.ndarray]:
            scale, shift, mean, var = (weights[k][index] for k in (1, 2, 3, 4))
            s = scale / np.sqrt(var + epsilon)
            return s, shift - s * mean

        s, t = affine(0)
        s2, t2 = affine(1)
        shape = self.probe.shapes[activation_inputs(self.ref, name_n)[0]]
        spatial = float(np.prod(shape[1:])) if len(shape) > 1 else 1.0
        return (
            float(np.max(np.abs(s2))) * delta
            + float(np.max(np.abs(s2 - s))) * self._input_norm(name_n)
            + float(np.linalg.norm(t2 - t)) * math.sqrt(spatial)
        )

    def _constant_shift(self, name_n: str, name_m: str) -> float:
        """‖c′ − c‖ broadcast over the output, for the constant operands of an add/sub."""
        total = 0.0
        positions = self._output_positions(name_n)
        for _, c, c2 in self._weights(name_n, name_m):
            if c.dtype.kind != "f":
                continue
            repeat = positions / max(c.size, 1)
            total += float(np.linalg.norm(c2 - c)) * math.sqrt(max(repeat, 1.0))
        return total

    def _scale(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        weights = self._weights(name_n, name_m)
        if len(weights) != 1:
            return np.full_like(delta, np.inf)
        _, c, c2 = weights[0]
        if self.ref.nodes[name_n].op_type == "Div":
            if np.any(c == 0) or np.any(c2 == 0):
                return np.full_like(delta, np.inf)
            c, c2 = 1.0 / c, 1.0 / c2
        return float(np.max(np.abs(c2))) * delta + float(np.max(np.abs(c2 - c))) * self._input_norm(name_n)


def _sigma(matrix: np.ndarray) -> float:
    """σ_max of a matrix (a higher-rank constant is flattened to its last axis)."""
    if matrix.ndim == 1:
        return float(np.max(np.abs(matrix))) if matrix.size else 0.0
    flat = matrix.reshape(-1, matrix.shape[-1])
    if not np.any(flat):
        return 0.0
    return float(np.linalg.norm(flat, 2))


def _grouped_sigma(kernel: np.ndarray, groups: int) -> float:
    """σ_max of a conv kernel as a 2-D matrix per group (C_out/g × C_in/g·k); block-diagonal over groups."""
    if not np.any(kernel):
        return 0.0
    out_per_group = kernel.shape[0] // max(groups, 1)
    best = 0.0
    for g in range(max(groups, 1)):
        block = kernel[g * out_per_group : (g + 1) * out_per_group].reshape(out_per_group, -1)
        best = max(best, float(np.linalg.norm(block, 2)))
    return best

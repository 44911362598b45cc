"""Layer-wise output-difference bound through a segment pair (paper §4.2).

Replacing segment S_N of model N by S_M changes the segment's output by ΔX. With the segment's input
unchanged (ΔX_0 = 0), ‖ΔX‖ is bounded inductively, op by op, per input sample:

- **linear** (Conv, Gemm, MatMul with a constant weight): W′X′ − WX = W′ΔX_i + (W′ − W)X_i, so
  ‖ΔX_{i+1}‖ ≤ ‖W′‖·‖ΔX_i‖ + ‖(W′ − W)X_i + (b′ − b)‖. The second term is evaluated exactly on the
  reference's own activation X_i of that sample (`drift`: the op run with its weights replaced by their
  differences) where the paper bounds it by σ_max(W′ − W)·‖X_i‖; with ΔX_0 = 0 the first linear op's
  difference is exact. ‖W′‖ is σ_max(W′); a convolution is its kernel reshaped to the 2-D matrix K′
  (C_out × C_in/groups·k) acting on the unfolded input (im2col), as the paper does, and
  ‖unfold(ΔX)‖ ≤ √r·‖ΔX‖, r the most windows reading one input value (r = 1 for a 1×1 conv), so
  σ_max(K′)·√r bounds the convolution as an operator. A grouped conv is block-diagonal: σ_max is the
  largest over groups;
- **activations** (ReLU, tanh, sigmoid, …) and **pooling** pass the bound (they are 1-Lipschitz;
  overlapping windows count √r; global average pooling scales it by 1/√(spatial size));
- **normalization** (BatchNormalization, an affine map s·X + t per channel): max|s′|·‖ΔX‖ +
  ‖(s′ − s)X + (t′ − t)‖, the second term exact on X like a linear op's; a multiplication by a
  constant likewise (max|c′|·‖ΔX‖ + ‖(c′ − c)X‖);
- **multi-source**: add sums the branches' bounds, concat combines them in quadrature;
- anything else (attention products, unknown ops) makes the bound infinite: not assessable, never wrong.

Every term is per sample (no worst case over samples); the exact terms carry a small allowance for
both models being evaluated in float32 (`_ROUNDING`). X_i are the reference model's own activations on
the samples (one batched ONNX Runtime pass, which also evaluates the weight-change terms).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from sommelier_core import defaults
from sommelier_core.inference import model_session, node_attribute, probe_session, rows_within_budget
from sommelier_core.segments.drift import (
    DRIFT_INPUT,
    DRIFT_OPS,
    DRIFT_OUTPUT,
    batch_norm_affine,
    difference_model,
)
from sommelier_core.segments.lcs import SegmentPair
from sommelier_core.segments.sequences import GraphView, Op, OpSequence, activation_inputs, weight_inputs

SEGMENTS_STAGE = "segment_matches"
"""The stage a segment analysis runs in, as memory-budget errors name it."""
PASS_THROUGH = frozenset(
    {
        "Relu", "Tanh", "Sigmoid", "Softmax", "Softplus", "Softsign", "Clip", "Identity", "Dropout",
        "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "GlobalMaxPool", "Abs", "Neg",
        "Cast", "HardSigmoid", "HardSwish", "Elu", "Selu", "LeakyRelu",
    }
)  # fmt: skip
"""Ops that are Lipschitz (in l2, per sample) or rearrange values: the difference bound passes through,
scaled by the op's largest slope (`activation_slope`)."""

# slopes above 1: Gelu's derivative peaks at ≈ 1.129; HardSwish's, (2x + 3)/6 on (−3, 3), approaches 1.5
_LIPSCHITZ = {"Gelu": 1.13, "HardSwish": 1.5}
_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875
_SUM_MERGES = frozenset({"Add", "Sub", "Reshape", "Expand", "Flatten", "Identity"})
_LINEAR = frozenset({"Conv", "Gemm", "MatMul"})
_ROUNDING = 1e-6
"""Relative allowance, on the scale of ‖W′X‖ + ‖WX‖, for both models' float32 evaluation of an exact term."""


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
    """Per-sample norms (and shapes) of the reference's activation tensors, from one batched ORT pass.

    `drifts` maps a node to (its activation input, a function of that input's rank (batch axis excluded)
    building the model of its weight-change term, see `drift`, or None): each model is built once the
    first batch shows the rank, runs on the same batches, and only its per-sample output norm is kept.
    The first batch is one sample; the others are sized from it so that the probed tensors of a batch take at
    most `memory_bytes` (`inference.rows_within_budget`; `label` names the model when one sample is too many).
    """

    def __init__(
        self,
        view: GraphView,
        x: np.ndarray,
        tensors: set[str],
        drifts: dict[str, tuple[str, Callable[[int], onnx.ModelProto | None]]] | None = None,
        batch_size: int = 1024,
        memory_bytes: int = defaults.STAGE_MEMORY_BYTES,
        label: str = "",
    ) -> None:
        self.view = view
        self.norms: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.drift: dict[str, np.ndarray] = {}
        drifts = drifts or {}
        float_types = _float_tensors(view.model)
        # only floating-point activations have a norm that matters (a Shape output is an integer vector)
        tensors = {t for t in tensors if float_types.get(t, True)} | {t for t, _ in drifts.values()}
        names = sorted(tensors - {view.input})
        session = probe_session(view.model, names) if names else None
        drift_sessions: dict[str, tuple[str, object]] | None = None
        parts: dict[str, list[np.ndarray]] = {n: [] for n in tensors}
        drift_parts: dict[str, list[np.ndarray]] = {}
        input_name = view.input
        self.batch_rows = 1
        """Samples per batch that fit the memory budget (what the noise injection runs at, too)."""
        start, rows = 0, 1
        while start < len(x):
            batch = x[start : start + rows]
            values = dict(zip(names, session.run(names, {input_name: batch}), strict=True)) if session else {}
            values[input_name] = batch
            if start == 0:  # the probed tensors, their float64 copies, and ONNX Runtime's own buffers
                per_row = 3 * sum(np.asarray(v).nbytes for v in values.values()) // max(1, len(batch))
                self.batch_rows = rows_within_budget(per_row, memory_bytes, label, SEGMENTS_STAGE, cap=batch_size)
            start, rows = start + rows, self.batch_rows
            for name in tensors:
                value = values[name].astype(np.float64)
                self.shapes[name] = tuple(value.shape[1:])
                parts[name].append(_sample_norms(value))
            if drift_sessions is None:
                drift_sessions = _drift_sessions(drifts, values)
                drift_parts = {n: [] for n in drift_sessions}
            for node, (tensor, drift_session) in drift_sessions.items():
                feed = {DRIFT_INPUT: values[tensor].astype(np.float32)}
                drift_parts[node].append(_sample_norms(drift_session.run([DRIFT_OUTPUT], feed)[0]))
        self.norms = {n: np.concatenate(v) for n, v in parts.items()}
        self.drift = {n: np.concatenate(v) for n, v in drift_parts.items()}


def _drift_sessions(
    drifts: dict[str, tuple[str, Callable[[int], onnx.ModelProto | None]]], values: dict[str, np.ndarray]
) -> dict[str, tuple[str, object]]:
    """An ORT session per node whose weight-change model could be built for its input's rank."""
    sessions = {}
    for node, (tensor, build) in drifts.items():
        model = build(values[tensor].ndim - 1)
        if model is not None:
            sessions[node] = (tensor, model_session(model))
    return sessions


def _sample_norms(value: np.ndarray) -> np.ndarray:
    """‖value[i]‖ for each sample i (in float64)."""
    return np.linalg.norm(value.astype(np.float64).reshape(len(value), -1), axis=1)


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

    def __init__(
        self,
        reference: GraphView,
        candidate: GraphView,
        x: np.ndarray,
        memory_bytes: int = defaults.STAGE_MEMORY_BYTES,
        label: str = "",
    ) -> None:
        self.ref = reference
        self.cand = candidate
        self.x = x
        self.memory_bytes = memory_bytes
        self.label = label
        self.probe: ActivationProbe | None = None

    def bounds(self, segments: Sequence[SegmentPair]) -> list[SegmentBound]:
        """One bound per segment, each with an unchanged segment input (ΔX_0 = 0)."""
        tensors = activation_tensors(self.ref, segments)
        drifts = {}
        for segment in segments:
            for op_n, op_m in zip(segment.reference_ops, segment.candidate_ops, strict=True):
                for name_n, name_m in _node_pairs(op_n, op_m):
                    if name_n not in self.ref.nodes or name_m not in self.cand.nodes:
                        continue
                    inputs = activation_inputs(self.ref, name_n)
                    if len(inputs) == 1 and self.ref.nodes[name_n].op_type in DRIFT_OPS:
                        build = functools.partial(difference_model, self.ref, self.cand, name_n, name_m)
                        drifts[name_n] = (inputs[0], build)
        self.probe = ActivationProbe(
            self.ref,
            np.asarray(self.x, dtype=np.float32),
            tensors,
            drifts,
            memory_bytes=self.memory_bytes,
            label=self.label,
        )
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
        if kind in PASS_THROUGH or kind in _LIPSCHITZ:
            return delta * activation_slope(node)
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

    def _drift(self, name_n: str) -> np.ndarray | None:
        """‖(W′ − W)X + (b′ − b)‖ per sample at this node (None where it could not be evaluated)."""
        return self.probe.drift.get(name_n)

    def _rounding(self, name_n: str, name_m: str, scale: float) -> np.ndarray | float:
        """The float32 allowance of an exact term: `_ROUNDING`·scale·‖X‖; none when no constant changes
        (both models then compute the same op on the same input bit for bit)."""
        if all(np.array_equal(w, w2) for _, w, w2 in self._weights(name_n, name_m)):
            return 0.0
        return _ROUNDING * scale * self._input_norm(name_n)

    def _linear(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        node = self.ref.nodes[name_n]
        weights = {position: (w, w2) for position, w, w2 in self._weights(name_n, name_m)}
        drift = self._drift(name_n)
        if drift is None:
            return np.full_like(delta, np.inf)
        if node.op_type == "Conv":
            if 1 not in weights:
                return np.full_like(delta, np.inf)
            w, w2 = weights[1]
            groups = int(node_attribute(node, "group", 1))
            spatial = self.probe.shapes[activation_inputs(self.ref, name_n)[0]][1:]
            reuse = math.sqrt(float(np.max(window_counts(node, spatial))))
            lipschitz, original = _grouped_sigma(w2, groups) * reuse, _grouped_sigma(w, groups) * reuse
        elif node.op_type == "Gemm":
            alpha = abs(float(node_attribute(node, "alpha", 1.0)))
            position = 1 if 1 in weights else 0
            if position not in weights:
                return np.full_like(delta, np.inf)
            w, w2 = weights[position]
            lipschitz, original = alpha * _sigma(w2), alpha * _sigma(w)
        else:  # MatMul with exactly one constant operand
            if len(weights) != 1:
                return np.full_like(delta, np.inf)
            ((w, w2),) = weights.values()
            if w.ndim < 2:
                return np.full_like(delta, np.inf)
            lipschitz, original = _sigma(w2), _sigma(w)
        return lipschitz * delta + drift + self._rounding(name_n, name_m, lipschitz + original)

    def _batch_norm(self, name_n: str, name_m: str, delta: np.ndarray) -> np.ndarray:
        weights = {position: (w, w2) for position, w, w2 in self._weights(name_n, name_m)}
        drift = self._drift(name_n)
        if drift is None or not all(k in weights for k in (1, 2, 3, 4)):
            return np.full_like(delta, np.inf)
        values = {k: weights[k] for k in (1, 2, 3, 4)}
        epsilon = float(node_attribute(self.ref.nodes[name_n], "epsilon", 1e-5))
        s, _ = batch_norm_affine(values, 0, epsilon)
        s2, _ = batch_norm_affine(values, 1, epsilon)
        scale, original = float(np.max(np.abs(s2))), float(np.max(np.abs(s)))
        return scale * delta + drift + self._rounding(name_n, name_m, scale + original)

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
        drift = self._drift(name_n)
        if len(weights) != 1 or drift is None:
            return np.full_like(delta, np.inf)
        _, c, c2 = weights[0]
        if self.ref.nodes[name_n].op_type == "Div":
            c, c2 = 1.0 / c, 1.0 / c2  # nonzero: the weight-change term exists only then
        scale, original = float(np.max(np.abs(c2))), float(np.max(np.abs(c)))
        return scale * delta + drift + self._rounding(name_n, name_m, scale + original)


def activation_slope(node: onnx.NodeProto) -> float:
    """The largest slope of a pass-through op with its own attributes: how much it can stretch a difference.

    LeakyRelu and Elu stretch by their alpha beyond 1, Selu by gamma·max(1, alpha), HardSigmoid by its
    alpha (0.2 by default: it shrinks); Gelu and HardSwish by their derivative's peak; the rest by at most 1.
    """
    kind = node.op_type
    if kind in ("LeakyRelu", "Elu"):
        return max(1.0, abs(float(node_attribute(node, "alpha", 0.01 if kind == "LeakyRelu" else 1.0))))
    if kind == "Selu":
        alpha = abs(float(node_attribute(node, "alpha", _SELU_ALPHA)))
        return abs(float(node_attribute(node, "gamma", _SELU_GAMMA))) * max(1.0, alpha)
    if kind == "HardSigmoid":
        return abs(float(node_attribute(node, "alpha", 0.2)))
    return _LIPSCHITZ.get(kind, 1.0)


def _node_pairs(op_n: Op, op_m: Op) -> list[tuple[str, str]]:
    """The (N node, M node) pairs of two matched ops, branches of composite tokens included."""
    if not op_n.is_block:
        return [(op_n.node, op_m.node)] if op_n.node and op_m.node else []
    pairs = []
    for branch_n, branch_m in zip(op_n.branches, op_m.branches, strict=True):
        for inner_n, inner_m in zip(branch_n.ops, branch_m.ops, strict=True):
            pairs.extend(_node_pairs(inner_n, inner_m))
    return pairs


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

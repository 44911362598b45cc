"""The whole-model effect of replacing segments, estimated by noise injection (paper §4.2 steps i–iii).

(i) Run the reference model N on the inputs; (ii) perturb the output of every replaceable segment
with Gaussian noise whose norm is that segment's output-difference bound on that sample, finish the
forward pass, and measure the QoR difference from N's own outputs (top-1 disagreement for
classifiers, relative l2 otherwise) — the worst over a few noise draws; (iii) while the difference
exceeds ε, drop segments in increasing order of FLOPs (the cheapest replacement first) and measure
again; then (beyond the paper) offer the dropped segments back, most FLOPs first, keeping each one
whose addition leaves the set within ε. Random noise of the bounded norm stands in for the unknown
worst case (paper §4.2: it "captures the worst case", assuming no particular error structure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from sommelier_core.equivalence.compare import disagreement_rate
from sommelier_core.inference import probe_session
from sommelier_core.models import Task
from sommelier_core.segments.error_bound import ActivationProbe, SegmentBound, node_attribute
from sommelier_core.segments.lcs import SegmentPair
from sommelier_core.segments.sequences import GraphView


@dataclass(frozen=True)
class NoiseEffect:
    """Which segments stay replaced and the estimated QoR difference of N with them replaced."""

    kept: tuple[int, ...]
    """Indices (into the analysed segments) of the segments kept, in graph order."""
    estimated_difference: float
    """QoR difference of N with the kept segments perturbed (0 when none is kept)."""
    trace: tuple[tuple[tuple[int, ...], float], ...]
    """(segments perturbed, difference) at each step of the drop loop, first step first."""
    per_segment: tuple[float, ...]
    """The difference with each segment perturbed alone (its own effect on the whole model; NaN: not measured)."""


def qor_difference(reference_outputs: np.ndarray, outputs: np.ndarray, task: Task) -> float:
    """Top-1 disagreement (classification) or mean ‖Δ‖ / mean ‖ref‖ (anything else)."""
    if task == "classification":
        return disagreement_rate(reference_outputs, outputs)
    n = len(reference_outputs)
    ref = reference_outputs.reshape(n, -1).astype(np.float64)
    scale = float(np.mean(np.linalg.norm(ref, axis=1))) or 1.0
    return float(np.mean(np.linalg.norm(ref - outputs.reshape(n, -1), axis=1)) / scale)


def segment_macs(view: GraphView, probe: ActivationProbe, segment: SegmentPair) -> int:
    """Multiply-accumulates per sample of the segment's linear ops (Conv, Gemm, MatMul), from probed shapes."""
    total = 0
    for name in segment.reference_nodes:
        node = view.nodes[name]
        out_shape = probe.shapes.get(node.output[0])
        if out_shape is None:
            continue
        out_elements = math.prod(out_shape)
        weights = [view.constants[t] for t in node.input[1:2] if t in view.constants]
        if node.op_type == "Conv" and weights:
            total += out_elements * math.prod(weights[0].shape[1:])
        elif node.op_type == "Gemm" and weights:
            w = weights[0]
            transposed = int(node_attribute(node, "transB", 0))
            total += out_elements * (w.shape[1] if transposed else w.shape[0])
        elif node.op_type == "MatMul" and weights and weights[0].ndim >= 2:
            total += out_elements * weights[0].shape[-2]
    return total


class NoiseInjector:
    """N with an additive noise input on chosen tensors, run on fixed inputs with bounded-norm noise."""

    def __init__(self, view: GraphView, x: np.ndarray, shapes: dict[str, tuple[int, ...]], batch_size: int = 1024):
        """`batch_size` bounds the samples run (and noise drawn) at once: the caller sizes it to its memory budget."""
        self.view = view
        self.x = np.asarray(x, dtype=np.float32)
        self.shapes = shapes
        self.batch_size = batch_size
        self._sessions: dict[tuple[str, ...], object] = {}

    def _session(self, tensors: tuple[str, ...]):
        if tensors not in self._sessions:
            self._sessions[tensors] = _noisy_session(self.view.model, tensors)
        return self._sessions[tensors]

    def run(self, noise_norms: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """N's first output with Gaussian noise of norm `noise_norms[t][sample]` added to each tensor t.

        The noise is drawn batch by batch (`batch_size` samples, every tensor's in turn), so memory holds one
        batch's noise, not the whole validation set's.
        """
        tensors = tuple(sorted(noise_norms))
        rng = np.random.default_rng(seed)
        session = self._session(tensors)
        output = self.view.model.graph.output[0].name
        parts = []
        for start in range(0, len(self.x), self.batch_size):
            batch = self.x[start : start + self.batch_size]
            feed = {self.view.input: batch}
            for tensor in tensors:
                shape = (len(batch), *self.shapes[tensor])
                direction = rng.standard_normal(shape, dtype=np.float32).reshape(len(batch), -1)
                norms = noise_norms[tensor][start : start + len(batch)]
                scale = norms / np.maximum(np.linalg.norm(direction, axis=1), 1e-12)
                feed[f"{tensor}__noise"] = (direction * scale[:, None].astype(np.float32)).reshape(shape)
            parts.append(session.run([output], feed)[0])
        return np.concatenate(parts)

    def run_with(self, noise: dict[str, np.ndarray]) -> np.ndarray:
        """N's first output with `noise[t]` (one row per input) added to each tensor t."""
        tensors = tuple(sorted(noise))
        session = self._session(tensors)
        output = self.view.model.graph.output[0].name
        parts = []
        for start in range(0, len(self.x), self.batch_size):
            feed = {self.view.input: self.x[start : start + self.batch_size]}
            feed.update({f"{t}__noise": noise[t][start : start + self.batch_size].astype(np.float32) for t in tensors})
            parts.append(session.run([output], feed)[0])
        return np.concatenate(parts)


def _noisy_session(model: onnx.ModelProto, tensors: Sequence[str]):
    """A session of `model` in which each tensor t becomes t_clean + t__noise (a new graph input)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    for tensor in tensors:
        clean = f"{tensor}__clean"
        for node in graph.node:
            for k, name in enumerate(node.output):
                if name == tensor:
                    node.output[k] = clean
        graph.node.append(helper.make_node("Add", [clean, f"{tensor}__noise"], [tensor], name=f"{tensor}__inject"))
        graph.input.append(helper.make_tensor_value_info(f"{tensor}__noise", TensorProto.FLOAT, None))
    # the appended Add nodes must come right after their producers for a topologically sorted graph
    _toposort(graph)
    del graph.value_info[:]
    return probe_session(copy, [o.name for o in model.graph.output[:1]])


def _toposort(graph: onnx.GraphProto) -> None:
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        remaining = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            ordered.extend(remaining)  # leave the rest as it was; ORT reports a real cycle
            break
        pending = remaining
    nodes = [onnx.NodeProto() for _ in ordered]
    for target, source in zip(nodes, ordered, strict=True):
        target.CopyFrom(source)
    del graph.node[:]
    graph.node.extend(nodes)


def noise_difference(
    injector: NoiseInjector,
    reference_outputs: np.ndarray,
    segments: Sequence[SegmentPair],
    bounds: Sequence[SegmentBound],
    indices: Sequence[int],
    task: Task,
    *,
    draws: int = 2,
    seed: int = 0,
) -> float:
    """The QoR difference of N with the `indices` segments perturbed by noise of their bounds (worst of `draws`)."""
    norms: dict[str, np.ndarray] = {}
    for i in indices:
        tensor = segments[i].reference_output
        norms[tensor] = norms.get(tensor, 0) + bounds[i].per_sample
    if not norms:
        return 0.0
    return max(qor_difference(reference_outputs, injector.run(norms, seed + draw), task) for draw in range(draws))


def estimate_effect(
    injector: NoiseInjector,
    reference_outputs: np.ndarray,
    segments: Sequence[SegmentPair],
    bounds: Sequence[SegmentBound],
    macs: Sequence[int],
    task: Task,
    epsilon: float,
    *,
    draws: int = 2,
    seed: int = 0,
    segment_effects: bool = True,
) -> NoiseEffect:
    """Paper §4.2 steps i–iii: perturb every assessable segment; drop the cheapest until within ε.

    Segments with an infinite bound are never kept; segments whose bound is zero (identical weights)
    add no noise. The difference of a set is the worst over `draws` noise draws. Without
    `segment_effects` a segment's effect alone is measured only when the re-add step needs it (NaN
    otherwise), which saves a forward pass per segment and draw.
    """

    memo: dict[tuple[int, ...], float] = {}

    def difference(indices: Sequence[int]) -> float:
        changing = tuple(sorted(i for i in indices if bounds[i].max_bound > 0))
        if changing not in memo:
            memo[changing] = _difference(changing)
        return memo[changing]

    def _difference(indices: tuple[int, ...]) -> float:
        return noise_difference(injector, reference_outputs, segments, bounds, indices, task, draws=draws, seed=seed)

    assessable = [i for i, b in enumerate(bounds) if b.finite]
    effects: dict[int, float] = {i: float("inf") for i in range(len(segments)) if i not in assessable}

    def effect_alone(i: int) -> float:
        if i not in effects:
            effects[i] = difference([i])
        return effects[i]

    if segment_effects:
        for i in assessable:
            effect_alone(i)
    kept = sorted(assessable, key=lambda i: injector.view.order[segments[i].reference_nodes[0]])
    trace = []
    current = difference(kept)
    trace.append((tuple(kept), current))
    # a segment with a zero bound (identical weights) changes nothing: only the others are dropped
    drop_order = sorted((i for i in kept if bounds[i].max_bound > 0), key=lambda i: (macs[i], i))
    dropped = []
    for index in drop_order:
        if current <= epsilon:
            break
        kept = [i for i in kept if i != index]
        dropped.append(index)
        current = difference(kept)
        trace.append((tuple(kept), current))
    # Beyond the paper: cheapest-first dropping can drop a segment that is harmless on its own (a stem
    # whose effect alone is ≪ ε); offer the dropped ones back, most FLOPs first, while the set stays within ε.
    for index in sorted(dropped, key=lambda i: (-macs[i], i)):
        if current > epsilon or effect_alone(index) > epsilon:
            continue
        trial = sorted([*kept, index], key=lambda i: injector.view.order[segments[i].reference_nodes[0]])
        value = difference(trial)
        if value <= epsilon:
            kept, current = trial, value
            trace.append((tuple(kept), current))
    per_segment = tuple(effects.get(i, float("nan")) for i in range(len(segments)))
    return NoiseEffect(tuple(kept), current if kept else 0.0, tuple(trace), per_segment)

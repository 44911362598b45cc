"""Segment equivalence of one (reference N, candidate M) pair, end to end, as one typed record.

sequences → candidate segments (common runs) → per-segment output-difference bounds → whole-model
effect by noise injection with the drop loop → the segments N can take from M within ε → the
synthesized model measured (and, beyond the paper, cut down until it measures within ε). The measure
is asymmetric (paper §4.3): the record says what replacing N's segments by M's does *to N*.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from sommelier_core import defaults
from sommelier_core.equivalence.bound import STATISTICAL, bound_comparison, clopper_pearson
from sommelier_core.equivalence.compare import compare_outputs
from sommelier_core.inference import probe_session
from sommelier_core.models import Task, synthesized_id
from sommelier_core.segments.error_bound import SegmentBound, SegmentBounder
from sommelier_core.segments.lcs import SegmentPair, candidate_segments, has_weights
from sommelier_core.segments.noise_effect import NoiseInjector, estimate_effect, noise_difference, segment_macs
from sommelier_core.segments.sequences import GraphView, graph_view, model_sequences
from sommelier_core.segments.synthesis import synthesize

DEFAULT_EPSILON = defaults.SEGMENT_EPSILON
"""ε of the drop loop: the largest estimated QoR difference a synthesized model may have from N."""


@dataclass(frozen=True)
class SegmentMatch:
    """One matched segment: where it is on both sides, its output-difference bound and its effect on N."""

    reference_nodes: tuple[str, ...]
    candidate_nodes: tuple[str, ...]
    ops: tuple[str, ...]
    """Op types along the segment (`Block` for a collapsed parallel region)."""
    output_tensor: str
    """The reference tensor the segment hands on (where its difference is bounded and injected)."""
    output_bound: float
    """Largest per-sample bound on ‖ΔX‖ at the segment output (inf: not assessable)."""
    relative_bound: float
    """Mean over samples of bound / ‖X_out‖."""
    macs: int
    """Multiply-accumulates per sample of the segment's linear ops."""
    estimated_effect: float
    """QoR difference of N with this segment alone perturbed by noise of its bound."""
    identical: bool
    """The two sides carry the same weights (the bound is 0; swapping changes nothing)."""
    kept: bool
    """Kept by the drop loop, and by the measurement of the synthesized model: part of the synthesized model."""

    def as_json(self) -> dict:
        def finite(value: float) -> float | None:
            return round(value, 6) if np.isfinite(value) else None

        return {
            "reference_nodes": list(self.reference_nodes),
            "candidate_nodes": list(self.candidate_nodes),
            "ops": list(self.ops),
            "output_tensor": self.output_tensor,
            "output_bound": finite(self.output_bound),
            "relative_bound": finite(self.relative_bound),
            "macs": self.macs,
            "estimated_effect": finite(self.estimated_effect),
            "identical": self.identical,
            "kept": self.kept,
        }


@dataclass(frozen=True)
class SegmentAnalysis:
    """What N can take from M: matched segments, the kept ones and the estimated QoR difference."""

    reference_id: str
    candidate_id: str
    task: Task
    n: int
    epsilon: float
    segments: tuple[SegmentMatch, ...]
    estimated_difference: float
    """QoR difference of N with every kept segment perturbed (the worst of the noise draws)."""
    estimated_upper: float
    """`estimated_difference` plus its one-sided statistical margin at confidence 1 − δ (classifiers)."""
    synthesizable: bool
    """Whether the kept segments make a model different from both N and M."""
    seconds: float
    measured_difference: float | None = None
    """The synthesized model's real difference from N on all of `x` (ONNX Runtime), when synthesizable."""
    measured_upper: float | None = None
    """Its statistical upper bound at confidence 1 − δ (what the index ranks synthesized candidates by)."""

    @property
    def kept(self) -> tuple[SegmentMatch, ...]:
        return tuple(s for s in self.segments if s.kept)


def analyse_pair(
    reference_id: str,
    reference: onnx.ModelProto,
    candidate_id: str,
    candidate: onnx.ModelProto,
    x: np.ndarray,
    task: Task,
    *,
    epsilon: float = DEFAULT_EPSILON,
    delta: float = defaults.DELTA,
    reference_outputs: np.ndarray | None = None,
    samples: int | None = None,
    draws: int = 2,
    seed: int = 0,
    segment_effects: bool = True,
    memory_bytes: int = defaults.STAGE_MEMORY_BYTES,
) -> SegmentAnalysis:
    """Segment equivalence of N = `reference` with M = `candidate` on inputs `x` (batch first).

    `samples` caps the inputs the bounds and the noise injection use (the first ones of `x`): the cost
    is ≈ (segments + drop steps) × `draws` forward passes of N over them; without `segment_effects`
    the per-segment effects are measured only where the drop loop needs them. The synthesized model
    is then measured on all of `x`; while its measured difference exceeds ε, the cheapest changing
    segment is dropped and it is measured again (the estimate screens, the measurement decides).
    Inputs are streamed in batches whose probed tensors take at most `memory_bytes`.
    """
    started = time.perf_counter()
    all_x = x = np.asarray(x, dtype=np.float32)
    all_outputs = reference_outputs
    if samples is not None and samples < len(x):
        x = x[:samples]
        reference_outputs = None if reference_outputs is None else reference_outputs[:samples]
    ref_view, ref_sequences = model_sequences(reference)
    cand_view, cand_sequences = model_sequences(candidate)
    pairs = candidate_segments(ref_view, ref_sequences, cand_view, cand_sequences)
    if not pairs:
        return SegmentAnalysis(reference_id, candidate_id, task, len(x), epsilon, (), 0.0, 0.0, False, 0.0)
    bounder = SegmentBounder(ref_view, cand_view, x, memory_bytes, label=f"{reference_id} ← {candidate_id}")
    bounds = bounder.bounds(pairs)
    probe = bounder.probe
    macs = [segment_macs(ref_view, probe, p) for p in pairs]
    if reference_outputs is None:
        output = reference.graph.output[0].name
        session = probe_session(reference, [output])
        reference_outputs = _run_batched(session, ref_view.input, output, x, probe.batch_rows)
        if len(x) == len(all_x):
            all_outputs = reference_outputs  # every input already run: the measurement below reuses them
    injector = NoiseInjector(ref_view, x, probe.shapes, batch_size=probe.batch_rows)
    effect = estimate_effect(
        injector,
        reference_outputs,
        pairs,
        bounds,
        macs,
        task,
        epsilon,
        draws=draws,
        seed=seed,
        segment_effects=segment_effects,
    )
    kept = list(effect.kept)
    estimated = effect.estimated_difference
    while True:
        matches = _matches(pairs, bounds, macs, effect.per_segment, set(kept))
        synthesizable = _synthesizable(ref_view, cand_view, ref_sequences, cand_sequences, matches)
        measured = measured_upper = None
        if not synthesizable:
            break
        # the synthesized model is real: measure it like any candidate (design §3 value check + bound)
        model = synthesize(
            ref_view, cand_view, [m for m in matches if m.kept], name=synthesized_id(reference_id, candidate_id)
        )
        output = model.graph.output[0].name
        outputs = _run_batched(probe_session(model, [output]), ref_view.input, output, all_x, probe.batch_rows)
        if all_outputs is None:
            all_outputs = _run_batched(
                probe_session(reference, [output]), ref_view.input, output, all_x, probe.batch_rows
            )
        comparison = compare_outputs(
            reference_id, all_outputs, synthesized_id(reference_id, candidate_id), outputs, task
        )
        bound = bound_comparison(comparison, STATISTICAL, delta)
        measured, measured_upper = comparison.difference, bound.upper
        if measured <= epsilon:
            break
        # Beyond the paper: noise of the bounded norm is milder than a structured swap (a stem from an
        # independently trained model permutes the features), so the estimate can keep a set that is not
        # within ε. The measurement has the last word: drop the cheapest changing segment, as the drop
        # loop does, and measure again.
        changing = [i for i in kept if bounds[i].max_bound > 0]
        kept.remove(min(changing, key=lambda i: (macs[i], i)))
        estimated = noise_difference(injector, reference_outputs, pairs, bounds, kept, task, draws=draws, seed=seed)
    estimated_upper = estimated
    if task == "classification" and any(m.kept for m in matches):
        estimated_upper = clopper_pearson(round(estimated * len(x)), len(x), delta)[1]
    return SegmentAnalysis(
        reference_id,
        candidate_id,
        task,
        len(x),
        epsilon,
        matches,
        estimated if any(m.kept for m in matches) else 0.0,
        estimated_upper,
        synthesizable,
        time.perf_counter() - started,
        measured,
        measured_upper,
    )


def _matches(
    pairs: Sequence[SegmentPair],
    bounds: Sequence[SegmentBound],
    macs: Sequence[int],
    effects: Sequence[float],
    kept: set[int],
) -> tuple[SegmentMatch, ...]:
    """The analysed segments as records, with the `kept` ones flagged."""
    return tuple(
        SegmentMatch(
            reference_nodes=p.reference_nodes,
            candidate_nodes=p.candidate_nodes,
            ops=tuple(op.op_type for op in p.reference_ops),
            output_tensor=p.reference_output,
            output_bound=b.max_bound,
            relative_bound=b.relative_bound,
            macs=m,
            estimated_effect=effects[i],
            identical=b.max_bound == 0.0,
            kept=i in kept,
        )
        for i, (p, b, m) in enumerate(zip(pairs, bounds, macs, strict=True))
    )


def _run_batched(session, input_name: str, output: str, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return np.concatenate(
        [session.run([output], {input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    )


def _synthesizable(
    ref_view: GraphView, cand_view: GraphView, ref_sequences, cand_sequences, matches: tuple[SegmentMatch, ...]
) -> bool:
    """Kept segments that change N, and do not turn N into a copy of M (same structure, every weight swapped)."""
    changing = [m for m in matches if m.kept and not m.identical]
    if not changing:
        return False
    swapped = {n for m in matches if m.kept for n in m.reference_nodes}
    weighted = {
        name
        for sequence in ref_sequences
        for op in sequence.ops
        if not op.is_block and has_weights(ref_view, op)
        for name in op.flat_nodes()
    }
    same_structure = ref_sequences[0].keys == cand_sequences[0].keys
    return not (same_structure and weighted <= swapped)


def synthesize_pair(
    analysis: SegmentAnalysis, reference: onnx.ModelProto, candidate: onnx.ModelProto, name: str = ""
) -> onnx.ModelProto:
    """The synthesized model of an analysis: N with its kept segments taken from M."""
    kept = [s for s in analysis.segments if s.kept]
    label = name or synthesized_id(analysis.reference_id, analysis.candidate_id)
    return synthesize(graph_view(reference), graph_view(candidate), kept, name=label)


def segment_summary(analysis: SegmentAnalysis) -> dict:
    """The JSON summary of what N can take from M (`sommelier compare --json` key `segment_synthesis`)."""
    return {
        "matched": len(analysis.segments),
        "kept": len(analysis.kept),
        "epsilon": analysis.epsilon,
        "estimated_difference": round(analysis.estimated_difference, 6),
        "estimated_upper": round(analysis.estimated_upper, 6),
        "synthesizable": analysis.synthesizable,
        "measured_difference": analysis.measured_difference,
        "measured_upper": analysis.measured_upper,
        "seconds": round(analysis.seconds, 4),
    }


def describe_segments(analysis: SegmentAnalysis) -> str:
    """A human summary: one line per matched segment, then the kept set's estimated effect."""
    if not analysis.segments:
        return "segments: none in common"
    lines = [f"segments: {len(analysis.segments)} in common, {len(analysis.kept)} kept within ε={analysis.epsilon:.0%}"]
    for s in analysis.segments:
        bound = f"{s.relative_bound:.3g}×‖X‖" if np.isfinite(s.relative_bound) else "not assessable"
        effect = f"{s.estimated_effect:.2%}" if np.isfinite(s.estimated_effect) else "—"
        mark = "kept" if s.kept else "    "
        lines.append(
            f"  {mark} {'→'.join(s.ops):<28} {s.reference_nodes[0]} … ↔ {s.candidate_nodes[0]} …  "
            f"bound {bound}, effect {effect}{' (identical)' if s.identical else ''}"
        )
    lines.append(
        f"  estimated difference with the kept segments swapped in: {analysis.estimated_difference:.2%} "
        f"(≤ {analysis.estimated_upper:.2%} at 1 − δ); synthesizable: {analysis.synthesizable}"
    )
    if analysis.measured_difference is not None:
        lines.append(
            f"  synthesized model measured: {analysis.measured_difference:.2%} "
            f"(≤ {analysis.measured_upper:.2%} at 1 − δ)"
        )
    return "\n".join(lines)

"""Candidate segments: the common runs of two models' operator sequence sets (paper §4.2).

For every pair of sequences (one from each model's set) a dynamic program over their token keys
finds the maximal common runs in O(N·M); runs are taken longest first, never reusing a node on
either side (a composite token covers its branches' nodes, so a whole residual block matched on the
main sequence is not matched again inside). Runs must be *contiguous* (a longest common substring
of the token sequences): a segment is swapped as a unit, so a gap holding different ops on the two
sides would not be a segment.

Each run is then cut into *segments*, one per linear layer or normalization (or composite holding
one) together with the ops that follow it up to the next one (bias adds, activations, pooling,
reshapes): the units the whole-model step keeps or drops (paper §4.2 step iii). A run without a
linear layer or normalization (a lone bias) is not a segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sommelier_core.segments.sequences import GraphView, Op, OpSequence, weight_inputs


@dataclass(frozen=True)
class SegmentPair:
    """Structurally identical runs of ops in the reference (N) and the candidate (M), position by position."""

    reference_path: str
    candidate_path: str
    reference_ops: tuple[Op, ...]
    candidate_ops: tuple[Op, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(op.key for op in self.reference_ops)

    @property
    def reference_nodes(self) -> tuple[str, ...]:
        return tuple(n for op in self.reference_ops for n in op.flat_nodes())

    @property
    def candidate_nodes(self) -> tuple[str, ...]:
        return tuple(n for op in self.candidate_ops for n in op.flat_nodes())

    @property
    def reference_output(self) -> str:
        """The tensor the segment hands on in the reference model (where its difference shows)."""
        return self.reference_ops[-1].output


def common_runs(a: tuple[str, ...], b: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """Maximal common contiguous runs of two key sequences as (start in a, start in b, length).

    The classic O(len(a)·len(b)) dynamic program: L[i][j] = L[i−1][j−1] + 1 when a[i−1] == b[j−1];
    a run is maximal where it cannot be extended by the next pair of positions.
    """
    n, m = len(a), len(b)
    table = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if a[i - 1] == b[j - 1]:
                table[i, j] = table[i - 1, j - 1] + 1
    runs = []
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            length = int(table[i, j])
            if length and (i == n or j == m or a[i] != b[j]):
                runs.append((i - length, j - length, length))
    return runs


UNIT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization"})
"""Weighted ops that start a segment; a constant add or scale (a bias, a rescaling) joins the unit before it."""


def starts_unit(view: GraphView, op: Op) -> bool:
    """Whether the op opens a segment: a linear layer or normalization with weights, or a composite holding one."""
    if not has_weights(view, op):
        return False
    if op.is_block:
        return any(view.nodes[n].op_type in UNIT_OPS for n in op.flat_nodes())
    return op.op_type in UNIT_OPS


def has_weights(view: GraphView, op: Op) -> bool:
    """Whether the op (or any node of a composite) reads a floating-point constant: a weight to swap."""
    for name in op.flat_nodes():
        for _, tensor in weight_inputs(view, name):
            value = view.constants.get(tensor)
            if value is not None and value.dtype.kind == "f" and value.size > 0:
                return True
    return False


def candidate_segments(
    reference: GraphView,
    reference_sequences: list[OpSequence],
    candidate: GraphView,
    candidate_sequences: list[OpSequence],
) -> list[SegmentPair]:
    """Structurally identical segments of the two models, in reference graph order."""
    runs = []
    for sa in reference_sequences:
        for sb in candidate_sequences:
            for start_a, start_b, length in common_runs(sa.keys, sb.keys):
                ops_a = sa.ops[start_a : start_a + length]
                ops_b = sb.ops[start_b : start_b + length]
                size = sum(len(op.flat_nodes()) for op in ops_a)
                runs.append((size, length, sa, sb, ops_a, ops_b))
    runs.sort(key=lambda r: (-r[0], -r[1], r[2].path, r[3].path))
    used_a: set[str] = set()
    used_b: set[str] = set()
    chosen: list[SegmentPair] = []
    for _, _, sa, sb, ops_a, ops_b in runs:
        nodes_a = {n for op in ops_a for n in op.flat_nodes()}
        nodes_b = {n for op in ops_b for n in op.flat_nodes()}
        if nodes_a & used_a or nodes_b & used_b:
            continue
        if not any(starts_unit(reference, op) for op in ops_a):
            continue
        used_a |= nodes_a
        used_b |= nodes_b
        chosen.extend(_split(reference, SegmentPair(sa.path, sb.path, ops_a, ops_b)))
    chosen.sort(key=lambda s: reference.order[s.reference_nodes[0]])
    return chosen


def _split(view: GraphView, run: SegmentPair) -> list[SegmentPair]:
    """Cut a run into units: each weighted op with the weightless ops after it (leading ones join the first)."""
    starts = [k for k, op in enumerate(run.reference_ops) if starts_unit(view, op)]
    if not starts:
        return []
    bounds = [0, *starts[1:], len(run.reference_ops)]
    return [
        SegmentPair(
            run.reference_path,
            run.candidate_path,
            run.reference_ops[lo:hi],
            run.candidate_ops[lo:hi],
        )
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]

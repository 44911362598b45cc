"""Synthesis: model N with its segment S_N replaced by the structurally identical S_M (paper §4.2).

Matched segments are identical in structure, so the swap is an initializer swap: every constant input
of every node of S_N takes the value of the same-position constant of S_M. A swapped value is written
as a new initializer (and the node re-pointed at it), so a constant that N shares with nodes outside
the segment keeps its value there. The result is checked by the ONNX checker and runs in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import onnx
from onnx import numpy_helper

from sommelier_core.errors import SommelierError
from sommelier_core.segments.sequences import GraphView, node_name, weight_inputs


class NodePairing(Protocol):
    """Structurally identical nodes of N and M, position by position (a `SegmentPair` or a `SegmentMatch`)."""

    @property
    def reference_nodes(self) -> tuple[str, ...]: ...

    @property
    def candidate_nodes(self) -> tuple[str, ...]: ...


class SynthesisError(SommelierError):
    """A synthesized model could not be built (mismatched segment, invalid result)."""


def synthesize(
    reference: GraphView,
    candidate: GraphView,
    segments: Sequence[NodePairing],
    *,
    name: str = "",
) -> onnx.ModelProto:
    """A copy of the reference model (N) whose `segments` carry the candidate's (M) weights.

    `name` becomes the synthesized graph's name and names the model in errors.
    """
    model = onnx.ModelProto()
    model.CopyFrom(reference.model)
    if name:
        model.graph.name = name
    label = (
        name
        or f"{reference.model.graph.name or 'reference'} with segments of {candidate.model.graph.name or 'candidate'}"
    )
    by_name = {node_name(node, index): node for index, node in enumerate(model.graph.node)}
    fresh: list[onnx.TensorProto] = []
    swapped = 0
    for segment in segments:
        if len(segment.reference_nodes) != len(segment.candidate_nodes):
            raise SynthesisError(
                f"{label}: segment {segment.reference_nodes[0]}…: {len(segment.reference_nodes)} nodes in the "
                f"reference, {len(segment.candidate_nodes)} in the candidate"
            )
        for ref_name, cand_name in zip(segment.reference_nodes, segment.candidate_nodes, strict=True):
            ref_weights = weight_inputs(reference, ref_name)
            cand_weights = dict(weight_inputs(candidate, cand_name))
            for position, tensor in ref_weights:
                donor = cand_weights.get(position)
                if donor is None or donor not in candidate.constants:
                    raise SynthesisError(f"{label}: {ref_name} input {position} has no counterpart in {cand_name}")
                value = candidate.constants[donor]
                original = reference.constants.get(tensor)
                if original is not None and (value.shape != original.shape or value.dtype != original.dtype):
                    raise SynthesisError(
                        f"{label}: {ref_name} weight {donor} {value.shape} {value.dtype.name} does not fit {tensor} "
                        f"{original.shape} {original.dtype.name}"
                    )
                new_name = f"{tensor}__synth{swapped}"
                swapped += 1
                fresh.append(numpy_helper.from_array(value, new_name))
                by_name[ref_name].input[position] = new_name
    model.graph.initializer.extend(fresh)
    _drop_unused_initializers(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise SynthesisError(f"{label}: synthesized model is not valid ONNX: {exc}") from exc
    return model


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads any more (the replaced weights), so the file carries one copy."""
    used = {tensor for node in model.graph.node for tensor in node.input}
    graph_inputs = {v.name for v in model.graph.input}
    keep = [t for t in model.graph.initializer if t.name in used or t.name in graph_inputs]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)

"""Segment matches of a model with its sampled peers, and the synthesized candidates they make.

The compare stage analyses every sampled pair in both directions (the measure is asymmetric, paper
§4.3): what the model can take from the peer, and what the peer can take from the model. An analysis
whose kept segments make a model different from both sides is a *synthesized candidate*: model N
with those segments from M, id `N+M`. The noise-injection estimate chooses the segments; being a
real model, it is then measured against N on the validation set, and that statistical upper bound
(column `upper`) is what queries use. The semantic side of the index keeps them in their own table
(provenance `synthesized`, with both source models); `sommelier synthesize N+M --out F.onnx`
materializes one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import polars as pl

from sommelier_core import defaults
from sommelier_core.errors import SommelierError
from sommelier_core.inference import ORT_ERRORS
from sommelier_core.models import SYNTHESIZED_SEPARATOR, Task, synthesized_id
from sommelier_core.segments.analysis import DEFAULT_EPSILON, SegmentAnalysis, analyse_pair, synthesize_pair
from sommelier_core.stages import MODEL_OUTPUTS, ONNX_MODEL, SEGMENT_MATCHES
from sommelier_core.store import ModelStore

SYNTHESIZED_COLUMNS = {
    "synthesized_id": pl.Utf8,
    "base_id": pl.Utf8,
    "donor_id": pl.Utf8,
    "estimated_difference": pl.Float64,
    "estimated_upper": pl.Float64,
    "measured_difference": pl.Float64,
    "upper": pl.Float64,
    "segments": pl.Int64,
    "swapped_nodes": pl.Utf8,
    "n": pl.Int64,
    "epsilon": pl.Float64,
    "provenance": pl.Utf8,
}


class UnknownSynthesizedModel(SommelierError):
    """A synthesized-candidate id that the index does not hold."""


@dataclass(frozen=True)
class SegmentMatches:
    """The compare stage's segment record for one model: an analysis per sampled pair and direction."""

    model_id: str
    analyses: tuple[SegmentAnalysis, ...]
    """Pairs with at least one segment in common (others are left out), both directions."""
    pairs_examined: int
    seconds: float
    failures: tuple[str, ...] = ()
    """Pairs whose analysis failed, one message each naming both models (the other pairs still count)."""

    @property
    def synthesizable(self) -> tuple[SegmentAnalysis, ...]:
        return tuple(a for a in self.analyses if a.synthesizable)


PAIR_ERRORS: tuple[type[Exception], ...] = (
    SommelierError,
    onnx.checker.ValidationError,
    onnx.shape_inference.InferenceError,
    *ORT_ERRORS,
)
"""What one pair's segment analysis may raise because of the two models (`match_peers` records these)."""


def match_peers(
    model_id: str,
    peers: Sequence[str],
    store: ModelStore,
    x: np.ndarray,
    task: Task,
    *,
    epsilon: float = DEFAULT_EPSILON,
    delta: float = defaults.DELTA,
    samples: int | None = defaults.SEGMENT_SAMPLES,
    draws: int = 1,
    memory_bytes: int = defaults.STAGE_MEMORY_BYTES,
) -> SegmentMatches:
    """Analyse (model ← peer) and (peer ← model) for every peer; models and outputs read through the store.

    One noise draw per estimate (`draws`) is enough here: the estimate only chooses the segments, and
    the synthesized model's bound in the index comes from measuring it. Inputs are streamed in batches whose
    probed tensors take at most `memory_bytes`; a pair one sample of which does not fit is recorded as failed.
    """
    started = time.perf_counter()
    models = {m: onnx.load(str(store.onnx_path(m))) for m in (model_id, *peers)}
    analyses = []
    failures = []
    for peer in peers:
        for base, donor in ((model_id, peer), (peer, model_id)):
            try:
                analysis = analyse_pair(
                    base,
                    models[base],
                    donor,
                    models[donor],
                    x,
                    task,
                    epsilon=epsilon,
                    delta=delta,
                    reference_outputs=store.load_outputs(base),
                    samples=samples,
                    draws=draws,
                    segment_effects=False,  # the index needs the kept set; `sommelier compare` reports every effect
                    memory_bytes=memory_bytes,
                )
            except PAIR_ERRORS as exc:
                # a pair ONNX Runtime or the synthesis cannot handle must not cost the model its other pairs
                failures.append(f"{base} ← {donor}: segment analysis failed: {exc}")
                continue
            if analysis.segments:
                analyses.append(analysis)
    return SegmentMatches(model_id, tuple(analyses), 2 * len(peers), time.perf_counter() - started, tuple(failures))


def synthesized_table(records: Iterable[SegmentMatches]) -> pl.DataFrame:
    """One row per synthesized candidate (deduplicated by id; the first record seen wins)."""
    rows: dict[str, dict] = {}
    for record in records:
        for analysis in record.synthesizable:
            key = synthesized_id(analysis.reference_id, analysis.candidate_id)
            if key in rows:
                continue
            kept = analysis.kept
            rows[key] = {
                "synthesized_id": key,
                "base_id": analysis.reference_id,
                "donor_id": analysis.candidate_id,
                "estimated_difference": analysis.estimated_difference,
                "estimated_upper": analysis.estimated_upper,
                "measured_difference": analysis.measured_difference,
                "upper": analysis.measured_upper,
                "segments": len(kept),
                "swapped_nodes": json.dumps([list(s.reference_nodes) for s in kept]),
                "n": analysis.n,
                "epsilon": analysis.epsilon,
                "provenance": "synthesized",
            }
    ordered = [rows[k] for k in sorted(rows)]
    return pl.DataFrame(ordered, schema=SYNTHESIZED_COLUMNS)


def find_analysis(store: ModelStore, hit_id: str) -> SegmentAnalysis:
    """The stored analysis behind a synthesized candidate id `N+M` (from either model's record)."""
    if SYNTHESIZED_SEPARATOR not in hit_id:
        raise UnknownSynthesizedModel(
            f"{hit_id!r} is not a synthesized candidate id (expected BASE{SYNTHESIZED_SEPARATOR}DONOR)"
        )
    # every split at a separator: a model id may itself contain one
    splits = [(hit_id[:i], hit_id[i + 1 :]) for i, c in enumerate(hit_id) if c == SYNTHESIZED_SEPARATOR]
    for base, donor in splits:
        for owner in (base, donor):
            if not store.has_record(SEGMENT_MATCHES.name, owner):
                continue
            record: SegmentMatches = store.load_record(SEGMENT_MATCHES.name, owner)
            for analysis in record.analyses:
                if analysis.reference_id == base and analysis.candidate_id == donor and analysis.synthesizable:
                    return analysis
    base, donor = splits[0]
    raise UnknownSynthesizedModel(
        f"no synthesized candidate {hit_id!r} in the index: {base} and {donor} were not compared, "
        "or no segment of theirs is interchangeable within ε"
    )


def materialize(store: ModelStore, hit_id: str) -> tuple[onnx.ModelProto, SegmentAnalysis]:
    """The synthesized ONNX model of a candidate id, built from the two stored ONNX files."""
    analysis = find_analysis(store, hit_id)
    base = onnx.load(str(store.onnx_path(analysis.reference_id)))
    donor = onnx.load(str(store.onnx_path(analysis.candidate_id)))
    return synthesize_pair(analysis, base, donor, name=hit_id), analysis


@dataclass(frozen=True)
class SynthesisCheck:
    """A synthesized model's measured difference from its base on the base's validation set."""

    kind: str
    difference: float
    n: int
    dataset: str


def measure_synthesized(store: ModelStore, analysis: SegmentAnalysis, onnx_path) -> SynthesisCheck:
    """Run the synthesized file (ONNX Runtime) on N's validation data and compare with N's stored outputs."""
    from sommelier_core.equivalence.compare import compare_outputs
    from sommelier_core.inference import run_onnx
    from sommelier_core.ingest.validation import resolve_dataset, validation_set_for
    from sommelier_core.zoo.datasets import BUILTIN_DATASETS

    base = analysis.reference_id
    stored = store.load_record(MODEL_OUTPUTS.name, base)
    if stored.dataset in BUILTIN_DATASETS:
        dataset = resolve_dataset(stored.dataset, samples=stored.n)
    else:
        dataset = validation_set_for(base, store.load_record(ONNX_MODEL.name, base).signature)
    reference = store.load_outputs(base)
    if len(dataset.x) != len(reference):
        raise SommelierError(
            f"{base}: its outputs were stored on {len(reference)} samples of {stored.dataset}; "
            f"cannot rebuild that set here (found {len(dataset.x)} samples of {dataset.name})"
        )
    comparison = compare_outputs(base, reference, str(onnx_path), run_onnx(onnx_path, dataset.x), analysis.task)
    return SynthesisCheck(comparison.kind, comparison.difference, comparison.n, dataset.name)

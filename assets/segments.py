"""Comparison inside the models: segment matches per sampled pair, and the synthesized candidates table."""

import polars as pl
from dagster import AssetExecutionContext

from assets.metadata import count, percent, significant, table
from assets.partitions import models_partitions
from assets.stage_asset import stage_asset
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from resources.validation import ValidationDataResource
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.equivalence.peers import PeerSample
from sommelier_core.ingest.convert import Conversion
from sommelier_core.segments.analysis import SegmentAnalysis
from sommelier_core.segments.candidates import SegmentMatches, match_peers, synthesized_table
from sommelier_core.stages import SEGMENT_MATCHES, SYNTHESIZED_INDEX


@stage_asset(SEGMENT_MATCHES)
def segment_matches(
    context: AssetExecutionContext,
    onnx_model: Conversion,
    model_outputs: ModelOutputs,
    peers: PeerSample,
    validation: ValidationDataResource,
    settings: IndexSettings,
    store: ModelStoreResource,
) -> SegmentMatches:
    """Interchangeable segments with each sampled peer, both directions (paper §4.2), and what they synthesize.

    Peers' ONNX files and outputs are read through the model store by id (design §8).
    """
    dataset = validation.dataset_for(model_outputs.model_id, onnx_model.signature)
    record = match_peers(
        model_outputs.model_id,
        peers.peers,
        store.store(),
        dataset.x,
        model_outputs.task,
        epsilon=settings.segment_epsilon,
        delta=settings.delta,
        samples=settings.segment_samples or None,
        memory_bytes=settings.stage_memory_bytes,
    )
    context.add_output_metadata(
        {
            "Pairs with segments in common": len(record.analyses),
            "Synthesized candidates": len(record.synthesizable),
            "Segment analysis (s)": significant(record.seconds),
            "Pairs that failed": len(record.failures),
            **{f"Failed pair {i + 1}": message for i, message in enumerate(record.failures)},
            **(
                {
                    "Segments by pair": table(
                        [
                            {
                                "reference ← donor": f"{a.reference_id} ← {a.candidate_id}",
                                "segments matched": len(a.segments),
                                "kept within ε": len(a.kept),
                                "estimated difference": _estimate_text(a),
                                "synthesized": a.synthesizable,
                            }
                            for a in record.analyses
                        ],
                        {
                            "reference ← donor": "string",
                            "segments matched": "int",
                            "kept within ε": "int",
                            "estimated difference": "string",
                            "synthesized": "bool",
                        },
                    )
                }
                if record.analyses
                else {}
            ),
        }
    )
    for message in record.failures:
        context.log.warning(message)
    return record


@stage_asset(SYNTHESIZED_INDEX)
def synthesized_index(context: AssetExecutionContext, store: ModelStoreResource) -> pl.DataFrame:
    """Synthesized candidates (model N with segments from M) from every indexed model's segment matches; one
    whose base or donor no repository lists any more is left out."""
    registered = sorted(context.instance.get_dynamic_partitions(models_partitions.name))
    frame = synthesized_table(store.store().records(SEGMENT_MATCHES.name, registered).values())
    frame = frame.filter(pl.col("base_id").is_in(registered) & pl.col("donor_id").is_in(registered))
    context.add_output_metadata({"Synthesized candidates": count(len(frame))})
    return frame


def _estimate_text(analysis: SegmentAnalysis) -> str:
    """The estimated difference with the kept segments swapped in; with none kept there is nothing to estimate
    (not a 0 % difference)."""
    if not analysis.kept:
        return f"none kept (no segment within ε = {percent(analysis.epsilon)})"
    text = f"{percent(analysis.estimated_difference)} (≤ {percent(analysis.estimated_upper)})"
    if analysis.measured_difference is not None:
        text += f", measured {percent(analysis.measured_difference)}"
    return text

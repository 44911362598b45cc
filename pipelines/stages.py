"""Which per-model stages exist, and whether a model's stages are current for its listed version."""

from __future__ import annotations

from sommelier_core.models import ModelEntry
from sommelier_core.store import ModelStore

FIRST_WAVE = ("fetched_model", "onnx_model", "model_outputs", "model_cushions", "model_profile")
SECOND_WAVE = ("peers", "pair_scores", "segment_matches", "pair_bounds")
INDEX_WAVE = ("semantic_index", "resource_index", "synthesized_index")


def is_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether every per-model stage ran for the version the repository lists now."""
    if not all(store.has_record(stage, entry.model_id) for stage in (*FIRST_WAVE, *SECOND_WAVE)):
        return False
    return store.load_record("fetched_model", entry.model_id).entry.version == entry.version

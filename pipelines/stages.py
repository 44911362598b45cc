"""Which per-model stages exist, and whether a model's stages are current for its listed version."""

from __future__ import annotations

from collections.abc import Sequence

from sommelier_core.models import ModelEntry
from sommelier_core.store import ModelStore

FIRST_WAVE = ("fetched_model", "onnx_model", "model_outputs", "model_cushions", "model_profile")
DEVICE_WAVE = ("device_profile",)  # partitioned by model × device
TABLE_WAVE = ("operator_table",)  # partitioned by device
SECOND_WAVE = ("peers", "pair_scores", "segment_matches", "pair_bounds")
INDEX_WAVE = ("semantic_index", "resource_index", "synthesized_index")


def is_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether every per-model stage ran for the version the repository lists now."""
    if not all(store.has_record(stage, entry.model_id) for stage in (*FIRST_WAVE, *SECOND_WAVE)):
        return False
    return store.load_record("fetched_model", entry.model_id).entry.version == entry.version


def missing_devices(store: ModelStore, model_id: str, devices: Sequence[str]) -> list[str]:
    """The devices a model has no latency profile on yet (a new device, or a store from before per-device profiles)."""
    return [d for d in devices if not store.has_record(f"device_profile@{d}", model_id)]

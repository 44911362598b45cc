"""Which per-model stages exist, and whether a model's stages are current for its listed version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sommelier_core.models import ModelEntry
from sommelier_core.store import ModelStore

FIRST_WAVE = ("fetched_model", "onnx_model", "model_outputs", "model_cushions", "model_profile")
DEVICE_WAVE = ("device_profile",)  # partitioned by model × device
TABLE_WAVE = ("operator_table",)  # partitioned by device
SECOND_WAVE = ("peers", "pair_scores", "segment_matches", "pair_bounds")
INDEX_WAVE = ("semantic_index", "resource_index", "synthesized_index")


PER_MODEL_STAGES = (*FIRST_WAVE, *SECOND_WAVE)  # in dependency order


def stages_to_run(
    store: ModelStore, entry: ModelEntry, parents: Mapping[str, Iterable[str]] | None = None
) -> tuple[str, ...]:
    """The per-model stages a model needs, in order: all of them for a new or changed version; else the
    stages with no record (a stage added by an upgrade, one that failed) and those downstream of them.

    `parents` maps a stage to the stages it reads (the asset graph's edges); without it only the
    missing stages themselves are named, which is enough to tell whether a model is current.
    """
    model_id = entry.model_id
    if not store.has_record("fetched_model", model_id):
        return PER_MODEL_STAGES
    if store.load_record("fetched_model", model_id).entry.version != entry.version:
        return PER_MODEL_STAGES
    stale = {stage for stage in PER_MODEL_STAGES if not store.has_record(stage, model_id)}
    for stage in PER_MODEL_STAGES:
        if any(parent in stale for parent in (parents or {}).get(stage, ())):
            stale.add(stage)
    return tuple(stage for stage in PER_MODEL_STAGES if stage in stale)


def is_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether every per-model stage ran for the version the repository lists now."""
    return not stages_to_run(store, entry)


def stale_devices(store: ModelStore, model_id: str, devices: Sequence[str]) -> list[str]:
    """The devices to (re)profile a converted model on: those without a latency profile of it, and those whose
    profile measured another ONNX file than the one converted now (a republished version with other weights,
    or a profile from before profiles recorded their file's fingerprint). None before the model is converted."""
    if not store.has_record("onnx_model", model_id):
        return []
    fingerprint = store.load_record("onnx_model", model_id).fingerprint
    return [
        device
        for device in devices
        if not store.has_record(f"device_profile@{device}", model_id)
        or getattr(store.load_record(f"device_profile@{device}", model_id), "onnx_fingerprint", "") != fingerprint
    ]


def conversion_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether the stored ONNX file is the conversion of the version the repository lists now."""
    return "onnx_model" not in stages_to_run(store, entry)

"""The waves `sommelier index` runs the stage table in, and whether a model's stages are current for its listed
version."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from sommelier_core.models import ModelEntry
from sommelier_core.stages import (
    DEVICE_PROFILE,
    FETCHED_MODEL,
    ONNX_MODEL,
    PER_MODEL_STAGES,
    Partitioning,
    device_record,
    in_wave,
)
from sommelier_core.store import FileCheck, ModelStore


def _wave(wave: int, partitioning: Partitioning) -> tuple[str, ...]:
    return tuple(stage.name for stage in in_wave(wave) if stage.partitioning == partitioning)


FIRST_WAVE = _wave(1, "model")
"""Per model, first: the stages that need no other model's records."""
DEVICE_WAVE = _wave(2, "model×device")
"""Per model × device: latency and operator profile."""
TABLE_WAVE = _wave(3, "device")
"""Per device: the operator table."""
SECOND_WAVE = _wave(4, "model")
"""Per model, once every model's first wave is stored: the stages that read other models' records."""
INDEX_WAVE = _wave(5, "none")
"""Once: the index tables."""
WAVES = (FIRST_WAVE, DEVICE_WAVE, TABLE_WAVE, SECOND_WAVE, INDEX_WAVE)
"""What `pipelines.index_run` runs, in order; every stage of the table is in exactly one."""


def stages_to_run(
    store: ModelStore,
    entry: ModelEntry,
    parents: Mapping[str, Iterable[str]] | None = None,
    on_damage: Callable[[FileCheck], None] | None = None,
) -> tuple[str, ...]:
    """The per-model stages a model needs, in order: all of them for a new or changed version; else the
    stages with no record (a stage added by an upgrade, one that failed) or a damaged one (the record, or a
    file it points to, no longer matches its checksum) and those downstream of them.

    `parents` maps a stage to the stages it reads (the asset graph's edges); without it only the
    missing stages themselves are named, which is enough to tell whether a model is current. `on_damage` is
    told of each damaged record or file found (its check names the file and what is wrong).
    """
    model_id = entry.model_id
    checks = {stage: store.check_record(stage, model_id) for stage in PER_MODEL_STAGES}
    for check in checks.values():
        if check.status == "damaged" and on_damage is not None:
            on_damage(check)
    if _needs_run(checks[FETCHED_MODEL.name]):
        return PER_MODEL_STAGES
    if store.load_record(FETCHED_MODEL.name, model_id).entry.version != entry.version:
        return PER_MODEL_STAGES
    stale = {stage for stage, check in checks.items() if _needs_run(check)}
    for stage in PER_MODEL_STAGES:
        if any(parent in stale for parent in (parents or {}).get(stage, ())):
            stale.add(stage)
    return tuple(stage for stage in PER_MODEL_STAGES if stage in stale)


def _needs_run(check: FileCheck) -> bool:
    """Whether a record's check says its stage must run: no record, or a damaged one. A record of a newer
    Sommelier or a pickled one is kept (reading it says to upgrade or to migrate)."""
    return check.status in ("missing", "damaged")


def is_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether every per-model stage ran for the version the repository lists now."""
    return not stages_to_run(store, entry)


def stale_devices(store: ModelStore, model_id: str, devices: Sequence[str]) -> list[str]:
    """The devices to (re)profile a converted model on: those without a latency profile of it, or with a damaged
    one, and those whose profile measured another ONNX file than the one converted now (a republished version
    with other weights, or a profile from before profiles recorded their file's fingerprint). None before the
    model is converted (or while its conversion record is damaged: converting it again comes first)."""
    if _needs_run(store.check_record(ONNX_MODEL.name, model_id, full=False)):
        return []
    fingerprint = store.load_record(ONNX_MODEL.name, model_id).fingerprint

    def profiled_now(device: str) -> bool:
        record = device_record(DEVICE_PROFILE.name, device)
        if _needs_run(store.check_record(record, model_id)):
            return False
        return getattr(store.load_record(record, model_id), "onnx_fingerprint", "") == fingerprint

    return [device for device in devices if not profiled_now(device)]


def conversion_current(store: ModelStore, entry: ModelEntry) -> bool:
    """Whether the stored ONNX file is the conversion of the version the repository lists now."""
    return ONNX_MODEL.name not in stages_to_run(store, entry)


def range_chunks(keys: Iterable[str], order: Sequence[str], size: int) -> list[list[str]]:
    """`keys` split into runs of at most `size` partitions that are consecutive in `order` (the partitions' order),
    each in that order: a run over a partition-key range covers every partition between its first and last, so a
    chunk may not skip one. Keys not in `order` are left out."""
    position = {key: i for i, key in enumerate(order)}
    chunks: list[list[str]] = []
    for key in sorted((k for k in keys if k in position), key=position.__getitem__):
        last = chunks[-1] if chunks else None
        if last is not None and len(last) < size and position[key] == position[last[-1]] + 1:
            last.append(key)
        else:
            chunks.append([key])
    return chunks


def wave_chunks(
    keys: Iterable[str], selection_of: Callable[[str], tuple[str, ...]], order: Sequence[str], size: int
) -> list[tuple[tuple[str, ...], list[str]]]:
    """A wave's runs, shared by the embedded and the cluster drivers: `keys` grouped by the stages each needs of the
    wave (`selection_of`, in the order the groups first appear), each group cut into `range_chunks` of at most
    `size` partitions; (stages, keys) per run. A group that needs none of the wave's stages is one chunk of all its
    keys (nothing runs for them)."""
    selections: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for key in keys:
        selections[selection_of(key)].append(key)
    return [
        (selection, chunk)
        for selection, members in selections.items()
        for chunk in (range_chunks(members, order, size) if selection else [members])
    ]


def stages_left(selection: Sequence[str], finished: Iterable[str]) -> tuple[str, ...]:
    """The stages of `selection` a failed range run did not finish (`finished`: its successful steps' keys, which
    are the stages' names), in order: what its models are run again for, one model per run."""
    done = set(finished)
    return tuple(stage for stage in selection if stage not in done)

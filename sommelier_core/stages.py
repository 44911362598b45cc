"""The stages of indexing, written once: name, group, order, what each reads and what it records.

Assets (`assets/`), jobs and the in-process driver (`pipelines/`), the model store (which record type a
stage's file holds) and the query module (which index tables exist) all take stage names from here, so
a stage is renamed, regrouped or added in one place. Plain data: no orchestrator import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODELS = "models"
"""The dynamic partitions of per-model stages: one per model id."""
DEVICES = "devices"
"""The dynamic partitions of per-device stages: one per device with a measured or imported profile."""

INGEST = "ingest"
ANALYSIS = "analysis"
DEVICE = "device"
INDEX = "index"
GROUPS = (INGEST, ANALYSIS, DEVICE, INDEX)
"""Asset groups, in the order the stages of each first run."""

Partitioning = Literal["model", "model×device", "device", "none"]


@dataclass(frozen=True)
class Stage:
    """One stage of indexing (one Dagster asset)."""

    name: str
    """The asset key and the name of its per-model record file."""
    group: str
    """The asset group (one of `GROUPS`)."""
    wave: int
    """When it runs in `sommelier index`: every stage of wave k runs (for every model) before wave k + 1."""
    reads: tuple[str, ...]
    """The stages whose output it reads (the asset graph's edges)."""
    partitioning: Partitioning
    """What one materialization covers: a model, a model on a device, a device, or everything (an index)."""
    record: str = ""
    """`module:Class` of the record a per-model stage keeps in the store (empty for index tables)."""


FETCHED_MODEL = Stage("fetched_model", INGEST, 1, (), "model", "sommelier_core.models:FetchedModel")
ONNX_MODEL = Stage("onnx_model", INGEST, 1, ("fetched_model",), "model", "sommelier_core.ingest.convert:Conversion")
MODEL_OUTPUTS = Stage(
    "model_outputs",
    ANALYSIS,
    1,
    ("fetched_model", "onnx_model"),
    "model",
    "sommelier_core.equivalence.outputs:ModelOutputs",
)
MODEL_CUSHIONS = Stage(
    "model_cushions",
    ANALYSIS,
    1,
    ("fetched_model", "onnx_model"),
    "model",
    "sommelier_core.equivalence.cushions:ModelCushions",
)
MODEL_PROFILE = Stage(
    "model_profile", ANALYSIS, 1, ("onnx_model",), "model", "sommelier_core.index.resource:ModelProfile"
)
DEVICE_PROFILE = Stage(
    "device_profile",
    DEVICE,
    2,
    ("onnx_model",),
    "model×device",
    "sommelier_core.profiling.device_profile:DeviceProfile",
)
OPERATOR_TABLE = Stage("operator_table", DEVICE, 3, ("device_profile",), "device")
PEERS = Stage("peers", ANALYSIS, 4, ("model_outputs",), "model", "sommelier_core.equivalence.peers:PeerSample")
PAIR_SCORES = Stage(
    "pair_scores",
    ANALYSIS,
    4,
    ("model_outputs", "peers"),
    "model",
    "sommelier_core.equivalence.compare:PairScores",
)
SEGMENT_MATCHES = Stage(
    "segment_matches",
    ANALYSIS,
    4,
    ("onnx_model", "model_outputs", "peers"),
    "model",
    "sommelier_core.segments.candidates:SegmentMatches",
)
PAIR_BOUNDS = Stage(
    "pair_bounds",
    ANALYSIS,
    4,
    ("pair_scores", "model_cushions"),
    "model",
    "sommelier_core.equivalence.bound:PairBounds",
)
SEMANTIC_INDEX = Stage("semantic_index", INDEX, 5, ("pair_bounds", "onnx_model"), "none")
RESOURCE_INDEX = Stage("resource_index", INDEX, 5, ("model_profile", "device_profile"), "none")
SYNTHESIZED_INDEX = Stage("synthesized_index", INDEX, 5, ("segment_matches",), "none")
REGISTRY_VERDICTS = Stage("registry_verdicts", INDEX, 5, ("semantic_index",), "none")

STAGES: tuple[Stage, ...] = (
    FETCHED_MODEL,
    ONNX_MODEL,
    MODEL_OUTPUTS,
    MODEL_CUSHIONS,
    MODEL_PROFILE,
    DEVICE_PROFILE,
    OPERATOR_TABLE,
    PEERS,
    PAIR_SCORES,
    SEGMENT_MATCHES,
    PAIR_BOUNDS,
    SEMANTIC_INDEX,
    RESOURCE_INDEX,
    SYNTHESIZED_INDEX,
    REGISTRY_VERDICTS,
)
"""Every stage, in the order `sommelier index` runs them (a stage after every stage it reads)."""

BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
DEVICE_SEPARATOR = "@"
"""Between a stage and a device in the name of a per-device record (`device_profile@cpu`)."""


def stage(name: str) -> Stage:
    """The stage called `name`; a per-device record name (`device_profile@cpu`) names its stage."""
    base = name.split(DEVICE_SEPARATOR, 1)[0]
    if base not in BY_NAME:
        raise KeyError(f"unknown stage {name!r}; stages are {', '.join(BY_NAME)}")
    return BY_NAME[base]


def device_record(stage_name: str, device: str) -> str:
    """The record name of a per-device stage on one device (`device_profile@cpu`)."""
    return f"{stage_name}{DEVICE_SEPARATOR}{device}"


def in_wave(wave: int) -> tuple[Stage, ...]:
    """The stages of one wave of `sommelier index`, in order."""
    return tuple(s for s in STAGES if s.wave == wave)


def partitioned(partitioning: Partitioning) -> tuple[str, ...]:
    """The names of the stages partitioned one way (what one job materializes), in order."""
    return tuple(s.name for s in STAGES if s.partitioning == partitioning)


def reads() -> dict[str, tuple[str, ...]]:
    """Each stage's name → the stages it reads (the asset graph's edges)."""
    return {s.name: s.reads for s in STAGES}


def table_file(stage_name: str) -> str:
    """The file an unpartitioned stage's table is kept in, under the store's index dir (`semantic_index.parquet`)."""
    return f"{stage_name}.parquet"


PER_MODEL_STAGES: tuple[str, ...] = partitioned("model")
"""Stages with one record per model, in dependency order."""

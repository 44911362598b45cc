"""Partitions: `models` (one per model id; the repository sensor adds them), `devices` (one per device
with a measured or profiled execution provider), and their product for per-device profiling; which of
them each kind of stage in the stage table is partitioned by, and how a stage maps its upstream's."""

import warnings

from dagster import (
    BetaWarning,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    PartitionMapping,
    PartitionsDefinition,
)

from sommelier_core.stages import DEVICES, MODELS, Partitioning, Stage

MODEL_DIMENSION = "model"
"""The model dimension of a model × device partition key."""
DEVICE_DIMENSION = "device"
"""The device dimension of a model × device partition key."""

models_partitions = DynamicPartitionsDefinition(name=MODELS)
devices_partitions = DynamicPartitionsDefinition(name=DEVICES)
model_device_partitions = MultiPartitionsDefinition(
    {MODEL_DIMENSION: models_partitions, DEVICE_DIMENSION: devices_partitions}
)
"""model × device: a new device is a new partition of the `devices` dimension, not a code change."""

PARTITIONS: dict[Partitioning, PartitionsDefinition | None] = {
    "model": models_partitions,
    "model×device": model_device_partitions,
    "device": devices_partitions,
    "none": None,
}
"""The partitions of a stage, by its `Stage.partitioning` (an index table is not partitioned)."""

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # stable in use since Dagster 1.4
    _ONE_DIMENSION: dict[tuple[Partitioning, Partitioning], PartitionMapping] = {
        ("model", "model×device"): MultiToSingleDimensionPartitionMapping(partition_dimension_name=MODEL_DIMENSION),
        ("model×device", "device"): MultiToSingleDimensionPartitionMapping(partition_dimension_name=DEVICE_DIMENSION),
    }


def partition_mapping(upstream: Stage, downstream: Stage) -> PartitionMapping | None:
    """How `downstream` reads `upstream`'s partitions when one is a dimension of the other (a model × device
    profile reads its model's conversion; a device's operator table reads every model's profile on it); None
    leaves Dagster's default (the same partition, or all of them for an unpartitioned index)."""
    return _ONE_DIMENSION.get((upstream.partitioning, downstream.partitioning))


def upstream_key(upstream: Stage, downstream: Stage, key: str) -> str:
    """The partition of `upstream` that `downstream`'s partition `key` reads: the same one, or its model's when a
    model × device stage reads a model stage (`key` then a `MultiPartitionKey`)."""
    mapping = partition_mapping(upstream, downstream)
    if isinstance(mapping, MultiToSingleDimensionPartitionMapping):
        return key.keys_by_dimension[mapping.partition_dimension_name]
    return key


def model_device_key(model_id: str, device: str) -> MultiPartitionKey:
    """The partition key of one model on one device."""
    return MultiPartitionKey({MODEL_DIMENSION: model_id, DEVICE_DIMENSION: device})

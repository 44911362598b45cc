"""Partitions: `models` (one per model id; the repository sensor adds them), `devices` (one per device
with a measured or profiled execution provider), and their product for per-device profiling."""

from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

models_partitions = DynamicPartitionsDefinition(name="models")
devices_partitions = DynamicPartitionsDefinition(name="devices")
model_device_partitions = MultiPartitionsDefinition({"model": models_partitions, "device": devices_partitions})
"""model × device: a new device is a new partition of the `devices` dimension, not a code change."""


def model_device_key(model_id: str, device: str) -> MultiPartitionKey:
    """The partition key of one model on one device."""
    return MultiPartitionKey({"model": model_id, "device": device})

"""The `models` dynamic partitions: one partition per model id; the repository sensor adds them."""

from dagster import DynamicPartitionsDefinition

models_partitions = DynamicPartitionsDefinition(name="models")

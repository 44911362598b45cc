"""Jobs: the per-model stages (partitioned by model) and the index build."""

from dagster import AssetSelection, define_asset_job

from assets.partitions import devices_partitions, model_device_partitions, models_partitions

PER_MODEL_GROUPS = ("ingest", "analysis")

model_job = define_asset_job(
    "index_models",
    selection=AssetSelection.groups(*PER_MODEL_GROUPS),
    partitions_def=models_partitions,
    description="Fetch, convert, run, profile, sample peers, compare and bound one model (one partition).",
)

index_job = define_asset_job(
    "build_index",
    selection=AssetSelection.groups("index"),
    description="Rebuild the semantic and resource indexes from every model's stored records.",
)

device_job = define_asset_job(
    "profile_devices",
    selection=AssetSelection.groups("device") - AssetSelection.assets("operator_table"),
    partitions_def=model_device_partitions,
    description="Measure one model's latency and profile its operators on one device (one model × device partition).",
)

operator_table_job = define_asset_job(
    "build_operator_tables",
    selection=AssetSelection.assets("operator_table"),
    partitions_def=devices_partitions,
    description="Rebuild one device's per-operator latency table from every model profiled on it.",
)

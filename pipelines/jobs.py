"""Jobs: the per-model stages (partitioned by model) and the index build."""

from dagster import AssetSelection, define_asset_job

from assets.partitions import models_partitions

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

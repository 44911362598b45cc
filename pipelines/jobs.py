"""Jobs: one per way a stage is partitioned (per model, per model × device, per device) and the index build.

Each selects the stages the stage table partitions that way, so a new stage joins its job there.
"""

from dagster import AssetSelection, define_asset_job

from assets.partitions import PARTITIONS
from sommelier_core.stages import partitioned

model_job = define_asset_job(
    "index_models",
    selection=AssetSelection.assets(*partitioned("model")),
    partitions_def=PARTITIONS["model"],
    description="Fetch, convert, run, profile, sample peers, compare and bound one model (one partition).",
)

index_job = define_asset_job(
    "build_index",
    selection=AssetSelection.assets(*partitioned("none")),
    description="Rebuild the semantic and resource indexes from every model's stored records.",
)

device_job = define_asset_job(
    "profile_devices",
    selection=AssetSelection.assets(*partitioned("model×device")),
    partitions_def=PARTITIONS["model×device"],
    description="Measure one model's latency and profile its operators on one device (one model × device partition).",
)

operator_table_job = define_asset_job(
    "build_operator_tables",
    selection=AssetSelection.assets(*partitioned("device")),
    partitions_def=PARTITIONS["device"],
    description="Rebuild one device's per-operator latency table from every model profiled on it.",
)

"""Jobs: one per way a stage is partitioned (per model, per model × device, per device) and the index build.

Each selects the stages the stage table partitions that way, so a new stage joins its job there, and the asset
checks of those stages run with them. `sommelier index` runs these same jobs (a subset of their stages where a
model needs only some), so its runs carry their names on Dagster's Runs page and Overview timeline.
"""

from dagster import AssetSelection, define_asset_job

from assets.partitions import PARTITIONS
from sommelier_core.stages import Partitioning, partitioned

CODE_LOCATION = "pipelines.definitions"
"""The code location `workspace.yaml` loads (named after its module): runs `sommelier index` executes in process
carry its origin, so the UI files them under this location's jobs (and its Overview timeline) as it does runs it
launches itself."""
REPOSITORY_NAME = "__repository__"
"""The name Dagster gives the repository of a `Definitions` object."""
REPOSITORY_LABEL = f"{REPOSITORY_NAME}@{CODE_LOCATION}"
"""How Dagster labels a run of a job of this location (tag `.dagster/repository`)."""

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

JOBS = (model_job, device_job, operator_table_job, index_job)
"""Every job, for `pipelines.definitions` and `sommelier index`."""

JOB_BY_PARTITIONING: dict[Partitioning, str] = {
    "model": model_job.name,
    "model×device": device_job.name,
    "device": operator_table_job.name,
    "none": index_job.name,
}
"""The job that runs the stages partitioned each way (each job selects exactly those)."""

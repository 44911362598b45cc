"""Schedules: re-index nightly so the indexes reflect every model materialized since."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from pipelines.jobs import index_job

reindex_schedule = ScheduleDefinition(
    name="reindex_nightly",
    job=index_job,
    cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Rebuilds the semantic and resource indexes from all models' stored records.",
)

"""Sensors: notice when a repository grows and index the new models."""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.partitions import models_partitions
from pipelines.stages import is_current
from resources.repositories import RepositoriesResource
from resources.store import ModelStoreResource


def make_repository_sensor(job_name: str, minimum_interval_seconds: int = 300) -> SensorDefinition:
    """A sensor that adds a `models` partition per newly listed model and requests a run of `job_name` for it.

    Models whose stages already ran for their listed version are not requested; a run key per model
    *version* means a republished model is indexed again. A repository that cannot be listed is
    reported without hiding the others.
    """

    @sensor(
        name="repository_sensor",
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds a partition per new model in the configured repositories and indexes it.",
    )
    def repository_sensor(
        context: SensorEvaluationContext, repositories: RepositoriesResource, store: ModelStoreResource
    ) -> SensorResult:
        entries, errors = repositories.list_models()
        for error in errors:
            context.log.warning(error)
        models = store.store()
        known = set(context.instance.get_dynamic_partitions(models_partitions.name))
        new = sorted({e.model_id for e in entries} - known)
        requests = [
            RunRequest(run_key=f"{e.model_id}@{e.version}", partition_key=e.model_id)
            for e in sorted(entries, key=lambda e: e.model_id)
            if not is_current(models, e)
        ]
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[models_partitions.build_add_request(new)] if new else [],
            skip_reason=None if entries else "no models listed: " + ("; ".join(errors) or "repositories are empty"),
        )

    return repository_sensor

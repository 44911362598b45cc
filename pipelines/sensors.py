"""Sensors: notice when a repository grows and index the new models."""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.partitions import devices_partitions, model_device_key, models_partitions
from pipelines.stages import conversion_current, is_current, stale_devices
from resources.repositories import RepositoriesResource
from resources.store import ModelStoreResource
from sommelier_core.profiling import available_devices
from sommelier_core.stages import ONNX_MODEL
from sommelier_core.store.store_lock import holder_line, lock_holder


def make_repository_sensor(
    job_name: str, minimum_interval_seconds: int = 300, profile_devices: bool = False
) -> SensorDefinition:
    """A sensor that adds a `models` partition per newly listed model and requests a run of `job_name` for it.

    Models whose stages already ran for their listed version are not requested; a run key per model
    *version* means a republished model is indexed again. A repository that cannot be listed is
    reported without hiding the others, and its models stay; a model its repository no longer lists loses
    its partition, so the next index build leaves it out. With `profile_devices`, it also adds a `devices` partition per
    device present here and requests a `profile_devices` run for every model converted at its listed
    version whose profile on a device is missing or measured another ONNX file (a republished model) —
    so a new device, a new model or a new version is profiled without a code change. `job_name` must
    then be the per-model job (`index_models`), the sensor's other target.

    While an index run (`sommelier index`) holds the store lock, the tick is skipped, naming the holder: that run
    indexes the same new models, and on the cluster its runs do not go through the daemon's run queue, whose
    limits would otherwise keep the two apart. The skip requests nothing and consumes no run key, so a model the
    index run does not make current is requested on a later tick.
    """
    from pipelines.jobs import device_job, model_job

    if profile_devices and job_name != model_job.name:
        raise ValueError(f"a sensor that profiles devices runs {model_job.name!r} per model, not {job_name!r}")
    target = {"jobs": [model_job, device_job]} if profile_devices else {"job_name": job_name}

    @sensor(
        name="repository_sensor",
        **target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds a partition per new model in the configured repositories and indexes it.",
    )
    def repository_sensor(
        context: SensorEvaluationContext, repositories: RepositoriesResource, store: ModelStoreResource
    ) -> SensorResult | SkipReason:
        models = store.store()
        held = lock_holder(models.root)
        if held is not None:
            return SkipReason(
                f"an index run holds {holder_line(models.root, held)}: it indexes the new models; "
                "the next tick looks again"
            )
        listing = repositories.list_models()
        entries, errors = listing.entries, listing.errors
        for error in errors:
            context.log.warning(error)
        known = set(context.instance.get_dynamic_partitions(models_partitions.name))
        new = sorted({e.model_id for e in entries} - known)
        requests = [
            RunRequest(run_key=f"{e.model_id}@{e.version}", partition_key=e.model_id, job_name=job_name)
            for e in sorted(entries, key=lambda e: e.model_id)
            if not is_current(models, e)
        ]
        partition_requests = [models_partitions.build_add_request(new)] if new else []
        removed = listing.removed(known) if entries else []  # an empty listing removes nothing
        if removed:
            partition_requests.append(models_partitions.build_delete_request(removed))
        if profile_devices:
            devices = available_devices()
            known_devices = set(context.instance.get_dynamic_partitions(devices_partitions.name))
            if set(devices) - known_devices:
                partition_requests.append(devices_partitions.build_add_request(sorted(set(devices) - known_devices)))
            # only once the listed version is converted: a profile run before then would measure the old file
            requests += [
                RunRequest(
                    run_key=f"{e.model_id}@{models.load_record(ONNX_MODEL.name, e.model_id).fingerprint}@{device}",
                    partition_key=model_device_key(e.model_id, device),
                    job_name=device_job.name,
                )
                for e in sorted(entries, key=lambda e: e.model_id)
                if conversion_current(models, e)
                for device in stale_devices(models, e.model_id, devices)
            ]
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=partition_requests,
            skip_reason=None if entries else "no models listed: " + ("; ".join(errors) or "repositories are empty"),
        )

    return repository_sensor

"""The whole story in one place: assets by stage, their checks, resources per deployment, jobs, sensor, schedule.

`SOMMELIER_DEPLOYMENT` picks the resource set and executor: `local` (default: SQLite-backed Dagster and
MLflow under the store root, the built-in zoo, the multiprocess executor) or `cluster` (what
`deploy/local-cluster up` starts and `deploy/local-cluster env` exports: the shared store root, the MLflow
tracking server and the repositories from the environment, Dagster's instance on PostgreSQL from
`$DAGSTER_HOME/dagster.yaml`, and each step a Celery task run by a worker process).
"""

from dagster import Definitions, EnvVar, ExecutorDefinition, load_assets_from_package_module, multiprocess_executor

import assets
from assets.checks import CHECKS
from pipelines.jobs import JOBS, model_job
from pipelines.schedules import reindex_schedule
from pipelines.sensors import make_repository_sensor
from resources.mlflow_tracker import MlflowTracker
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.settings import IndexSettings
from resources.store import ModelStoreResource, StoreIOManager
from resources.validation import ValidationDataResource
from sommelier_core.settings import (
    celery_broker,
    celery_settings,
    configured_index_settings,
    configured_repositories,
    deployment,
)


def build_resources(deployment: str = "local") -> dict:
    """The resource set of a deployment. Both index the repositories `$SOMMELIER_REPOSITORIES` lists (default:
    the project configuration's, else the built-in zoo) with the index settings `$SOMMELIER_INDEX_SETTINGS` sets over
    the project configuration's `settings:` (default: `IndexSettings`'s), so
    an embedded run and a cluster run given the same environment index the same models the same way."""
    repositories = RepositoriesResource(repositories=[RepositoryConfig(**r) for r in configured_repositories()])
    settings = IndexSettings.from_project_config(**configured_index_settings())
    if deployment == "local":
        return {
            "store": ModelStoreResource(),
            "io_manager": StoreIOManager(),
            "repositories": repositories,
            "validation": ValidationDataResource(),
            "mlflow": MlflowTracker(),
            "settings": settings,
        }
    if deployment == "cluster":
        # every worker must be told where the shared store and the tracking server are: no silent defaults
        return {
            "store": ModelStoreResource(root=EnvVar("SOMMELIER_HOME")),
            "io_manager": StoreIOManager(root=EnvVar("SOMMELIER_HOME")),
            "repositories": repositories,
            "validation": ValidationDataResource(),
            "mlflow": MlflowTracker(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
            "settings": settings,
        }
    raise ValueError(f"SOMMELIER_DEPLOYMENT={deployment!r}: expected 'local' or 'cluster'")


def build_executor(deployment: str = "local") -> ExecutorDefinition:
    """The executor of a deployment: two processes on this machine (`local`), or each step a Celery task on the
    cluster's queue (`cluster`; the workers `deploy/local-cluster up` starts share these settings)."""
    if deployment == "cluster":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": celery_broker(), "backend": "rpc://", "config_source": celery_settings()}
        )
    return multiprocess_executor.configured({"max_concurrent": 2})


all_assets = load_assets_from_package_module(assets)
"""Every stage's asset: each module of `assets/` (the stage table, `sommelier_core.stages`, names them)."""

all_checks = CHECKS
"""The asset checks defined apart from their assets (the indexes'); per-model stages evaluate theirs in their step."""

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=list(JOBS),
    sensors=[make_repository_sensor(model_job.name, profile_devices=True)],
    schedules=[reindex_schedule],
    resources=build_resources(deployment()),
    executor=build_executor(deployment()),
)

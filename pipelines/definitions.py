"""The whole story in one place: assets by stage, their checks, resources per deployment, jobs, sensor, schedule.

`SOMMELIER_DEPLOYMENT` picks the resource set: `local` (default: SQLite-backed Dagster and MLflow
under the store root, the built-in zoo, the multiprocess executor) or `cluster` (store root and
MLflow server from the environment; run Dagster with Postgres storage in its dagster.yaml).
"""

import os

from dagster import Definitions, EnvVar, load_assets_from_package_module, multiprocess_executor

import assets
from assets.checks import CHECKS
from pipelines.jobs import JOBS, model_job
from pipelines.schedules import reindex_schedule
from pipelines.sensors import make_repository_sensor
from resources.mlflow_tracker import MlflowTracker
from resources.repositories import RepositoriesResource
from resources.settings import IndexSettings
from resources.store import ModelStoreResource, StoreIOManager
from resources.validation import ValidationDataResource


def build_resources(deployment: str = "local") -> dict:
    """The resource set of a deployment."""
    if deployment == "local":
        return {
            "store": ModelStoreResource(),
            "io_manager": StoreIOManager(),
            "repositories": RepositoriesResource(),
            "validation": ValidationDataResource(),
            "mlflow": MlflowTracker(),
            "settings": IndexSettings(),
        }
    if deployment == "cluster":
        return {
            "store": ModelStoreResource(root=EnvVar("SOMMELIER_HOME")),
            "io_manager": StoreIOManager(root=EnvVar("SOMMELIER_HOME")),
            "repositories": RepositoriesResource(),
            "validation": ValidationDataResource(),
            "mlflow": MlflowTracker(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
            "settings": IndexSettings(),
        }
    raise ValueError(f"SOMMELIER_DEPLOYMENT={deployment!r}: expected 'local' or 'cluster'")


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
    resources=build_resources(os.environ.get("SOMMELIER_DEPLOYMENT", "local")),
    executor=multiprocess_executor.configured({"max_concurrent": 2}),
)

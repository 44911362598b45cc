"""The Celery app the cluster's workers run (`celery -A deploy.celery_app worker`): dagster-celery's own app and
step task (`dagster_celery.app`), with the Dagster instance each step uses made cheap on PostgreSQL.

dagster-celery builds a `DagsterInstance` from the run's instance reference for every step, and dagster-postgres
opens a new connection for every query (SQLAlchemy's NullPool): ≈ 4.5 ms each here, a PostgreSQL backend forked and
authenticated, against 0.06 ms for a query on an open connection — and a step over a range of models asks hundreds,
among them whether each partition and its upstream ones exist. Here a worker keeps one instance per instance
reference for all its steps, its storages holding a pooled connection, and answers "does this partition exist"
from the sets read at the start of each step (`pipelines.cluster_run.pooled_instance`); a key not among them is
still asked of the database. A worker imports what its steps import when it starts (`STEP_MODULES`), so no step
waits for it.
"""

from __future__ import annotations

import importlib

from celery.signals import task_prerun, worker_init
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from dagster_celery.app import app, execute_plan  # noqa: F401  (what `celery -A` loads, and its step task)

from pipelines.cluster_run import pooled_instance
from pipelines.index_run import forget_partitions

STEP_MODULES = ("pipelines.definitions", "dagster_postgres", "mlflow", "sklearn.datasets")
"""Imported when a worker starts, before it says it is ready: the definitions a step reconstructs its job from, the
instance's storage, MLflow's client, and scikit-learn (the built-in zoo's data). Imported by the first steps
instead, they cost each worker about 4.7 s of its first steps (py-spy, 48 models on 2 workers)."""

_instances: dict[str, DagsterInstance] = {}
_from_ref = DagsterInstance.from_ref


def instance_from_ref(instance_ref) -> DagsterInstance:
    """The worker's instance for `instance_ref`: made (and its connections pooled) on the first step that names it,
    the same one for every later step. dagster-celery's step task never disposes it."""
    key = serialize_value(instance_ref)
    if key not in _instances:
        _instances[key] = pooled_instance(_from_ref(instance_ref))
    return _instances[key]


DagsterInstance.from_ref = staticmethod(instance_from_ref)


@task_prerun.connect
def _read_partitions_again(**_kwargs) -> None:
    """Each step reads the partition sets afresh (the driver registers new models between index runs)."""
    for instance in _instances.values():
        forget_partitions(instance)


@worker_init.connect
def _import_step_modules(**_kwargs) -> None:
    """Import `STEP_MODULES` as the worker starts."""
    for name in STEP_MODULES:
        importlib.import_module(name)

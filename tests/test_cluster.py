"""The local cluster end to end: `deploy/local-cluster up|status|down`, `sommelier index|query|ui` against it, the
same indexes as the embedded run, and a worker killed mid-run.

Every test here carries the `cluster` marker and uses the session's cluster (`tests.cluster_fixtures`), which is
skipped, naming the service, where PostgreSQL or RabbitMQ does not answer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from deploy.local_cluster import service_pid, services
from tests.cluster_fixtures import (
    LOCAL_CLUSTER,
    REPO_ROOT,
    TEST_INDEX_SETTINGS,
    RunningCluster,
    _clean_env,
    add_models,
    local_cluster,  # noqa: F401  (the session fixture these tests use)
)

pytestmark = pytest.mark.cluster

INDEXES = ("semantic_index", "resource_index")
MEASURED_COLUMNS = ("latency_ms", "latency_p90_ms", "threads", "latency_source")
"""Resource-index columns timed on the machine (they differ between any two runs); the rest are computed."""


def _index(store: Path, name: str) -> pl.DataFrame:
    frame = pl.read_parquet(store / "index" / f"{name}.parquet")
    frame = frame.drop([c for c in MEASURED_COLUMNS if c in frame.columns])
    keys = ["model_id", "device"] if name == "resource_index" else ["reference_id", "candidate_id"]
    return frame.sort(keys)


@dataclass
class IndexedCluster:
    cluster: RunningCluster
    cluster_run: subprocess.CompletedProcess
    embedded_run: subprocess.CompletedProcess
    cluster_indexes: dict[str, pl.DataFrame]
    embedded_indexes: dict[str, pl.DataFrame]


@pytest.fixture(scope="session")
def indexed_cluster(local_cluster, tmp_path_factory) -> IndexedCluster:  # noqa: F811
    """`sommelier index` on the cluster, and the same repository indexed by the embedded deployment."""
    on_cluster = local_cluster.sommelier("index")
    embedded_store = tmp_path_factory.mktemp("embedded-store")
    env = _clean_env() | {
        "SOMMELIER_HOME": str(embedded_store),
        "SOMMELIER_REPOSITORIES": local_cluster.env()["SOMMELIER_REPOSITORIES"],
        "SOMMELIER_INDEX_SETTINGS": json.dumps(TEST_INDEX_SETTINGS),
    }
    embedded = subprocess.run(
        [sys.executable, "-m", "sommelier_cli.main", "index"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return IndexedCluster(
        local_cluster,
        on_cluster,
        embedded,
        {name: _index(local_cluster.store, name) for name in INDEXES},
        {name: _index(embedded_store, name) for name in INDEXES} if embedded.returncode == 0 else {},
    )


def test_status_lists_every_service_up_and_up_again_leaves_them_as_they_are(local_cluster):  # noqa: F811
    cluster = local_cluster.cluster
    status = subprocess.run(
        [str(LOCAL_CLUSTER), "status", "--state-dir", cluster.state_dir], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stdout
    names = [s.name for s in services(cluster)]
    assert names == ["mlflow", "worker-1", "worker-2", "daemon", "webserver"]
    for name in names:
        assert f"{name:<10} up (pid {service_pid(cluster, name)})" in status.stdout
    pids = {name: service_pid(cluster, name) for name in names}
    env = _clean_env() | {"SOMMELIER_HOME": cluster.store_root}
    again = subprocess.run(local_cluster.up_command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already up") == len(names)
    assert {name: service_pid(cluster, name) for name in names} == pids


def test_sommelier_index_on_two_workers_builds_the_embedded_runs_indexes(indexed_cluster):
    run = indexed_cluster.cluster_run
    assert run.returncode == 0, run.stdout + run.stderr
    assert "on the cluster (2 workers)" in run.stdout and "Indexed 4/4 models" in run.stdout
    assert indexed_cluster.embedded_run.returncode == 0, indexed_cluster.embedded_run.stdout
    for name in INDEXES:
        assert indexed_cluster.cluster_indexes[name].height > 0, name
        assert indexed_cluster.cluster_indexes[name].equals(indexed_cluster.embedded_indexes[name]), name
    assert set(indexed_cluster.cluster_indexes["resource_index"]["model_id"]) == {
        "lab/conv0", "lab/conv1", "lab/lin0", "lab/lin1",
    }  # fmt: skip
    # the steps were spread over both worker processes
    for n in (1, 2):
        assert "Task execute_plan[" in indexed_cluster.cluster.worker_log(n), f"worker-{n} ran no step"


def test_cluster_runs_end_succeeded_in_postgres_and_records_hold_store_relative_paths(indexed_cluster):
    from dagster import DagsterInstance, DagsterRunStatus

    cluster = indexed_cluster.cluster
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(cluster.cluster.dagster_home)
    try:
        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            runs = instance.get_runs()
    finally:
        os.environ.pop("DAGSTER_HOME") if previous is None else os.environ.update(DAGSTER_HOME=previous)
    assert {r.job_name for r in runs} >= {"index_models", "profile_devices", "build_operator_tables", "build_index"}
    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    # every worker reads the same store wherever it is mounted: no record names the store root itself
    records = [p for p in cluster.store.rglob("*.json") if p.is_file()]
    assert records and not [p for p in records if str(cluster.store) in p.read_text(errors="replace")]


def test_sommelier_query_and_ui_work_against_the_cluster(indexed_cluster):
    cluster = indexed_cluster.cluster
    query = cluster.sommelier("query", "FIND 3 MODELS LIKE 'lab/conv0' WITHIN 100%")
    assert query.returncode == 0, query.stdout + query.stderr
    assert "lab/conv1" in query.stdout
    ui = cluster.sommelier("ui", timeout_s=60)
    assert ui.returncode == 0, ui.stdout
    assert f"Dagster UI on {cluster.cluster.dagster_url}" in ui.stdout
    assert f"MLflow UI on {cluster.cluster.mlflow_url}" in ui.stdout


def _wait_for_new_task(cluster: RunningCluster, seen: dict[int, int], timeout_s: float = 240) -> int:
    """The worker (1 or 2) that receives a step after `seen` (log lengths): it is running that step now."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for n in (1, 2):
            if re.search(r"Task execute_plan\[[^\]]+\] received", cluster.worker_log(n)[seen[n] :]):
                return n
        time.sleep(0.2)
    pytest.fail("no worker received a step")


def test_a_worker_killed_mid_step_hands_it_on_and_mlflow_keeps_one_run_per_model(indexed_cluster):
    from mlflow import MlflowClient

    from resources.mlflow_tracker import EXPERIMENT, MODEL_KEY_TAG

    cluster = indexed_cluster.cluster
    add_models(cluster.repository, ["conv2", "lin2"])
    seen = {n: len(cluster.worker_log(n)) for n in (1, 2)}
    command = [sys.executable, "-m", "sommelier_cli.main", "index"]
    index = subprocess.Popen(command, env=cluster.env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    victim = _wait_for_new_task(cluster, seen)
    os.kill(service_pid(cluster.cluster, f"worker-{victim}"), signal.SIGKILL)
    out, _ = index.communicate(timeout=600)
    assert index.returncode == 0, out
    assert "Indexed 6/6 models" in out
    resource_index = pl.read_parquet(cluster.store / "index" / "resource_index.parquet")
    assert {"lab/conv2", "lab/lin2"} <= set(resource_index["model_id"])
    # the killed worker's step ran again on the other; MLflow still has one run per model, none left RUNNING
    client = MlflowClient(tracking_uri=cluster.cluster.mlflow_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    per_model = Counter(run.data.tags[MODEL_KEY_TAG] for run in runs if MODEL_KEY_TAG in run.data.tags)
    assert len(per_model) == 6 and set(per_model.values()) == {1}, per_model
    assert {run.info.status for run in runs} == {"FINISHED"}
    # `up` brings the killed worker back, leaving the others as they are
    env = _clean_env() | {"SOMMELIER_HOME": cluster.cluster.store_root}
    again = subprocess.run(cluster.up_command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"worker-{victim}   started" in again.stdout, again.stdout

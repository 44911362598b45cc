"""The local cluster end to end: `deploy/local-cluster up|status|down`, `sommelier index|query|ui` against it, the
same indexes as the embedded run, a worker killed mid-run and `sommelier index` stopped mid-run.

The tests that carry the `cluster` marker use the session's cluster (`tests.cluster_fixtures`), which is skipped,
naming the service, where PostgreSQL or RabbitMQ does not answer. The others check, without a cluster, how a
killed test session's cluster is cleaned up.
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

from deploy.local_cluster import (
    SERVICE_MARK_ENV,
    Cluster,
    process_alive,
    process_start_ticks,
    service_pid,
    services,
    start_watchdog,
)
from tests.cluster_fixtures import (
    LOCAL_CLUSTER,
    REPO_ROOT,
    TEST_INDEX_SETTINGS,
    RecordedSession,
    RunningCluster,
    _clean_env,
    add_models,
    clean_leftover_sessions,
    local_cluster,  # noqa: F401  (the session fixture these tests use)
    recorded_sessions,
)

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


@pytest.mark.cluster
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


@pytest.mark.cluster
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


@pytest.mark.cluster
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


@pytest.mark.cluster
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


def _mlflow_runs(cluster: RunningCluster) -> list:
    """Every active run of the Sommelier experiment on the cluster's MLflow server."""
    from mlflow import MlflowClient

    from resources.mlflow_tracker import EXPERIMENT

    client = MlflowClient(tracking_uri=cluster.cluster.mlflow_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=1000)


def _index_runs_not_ended(cluster: RunningCluster) -> list:
    """The Dagster runs of `sommelier index` drivers (those tagged with their owner) still starting, started or
    canceling on the cluster's instance."""
    from dagster import DagsterRunStatus

    return _index_runs(cluster, [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])


def _index_runs(cluster: RunningCluster, statuses: list) -> list:
    """The Dagster runs of `sommelier index` drivers (those tagged with their owner) in one of `statuses`."""
    from dagster import DagsterInstance, RunsFilter

    from pipelines.index_run import OWNER_RUN_TAG

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(cluster.cluster.dagster_home)
    try:
        with DagsterInstance.get() as instance:
            runs = instance.get_runs(filters=RunsFilter(statuses=statuses))
    finally:
        os.environ.pop("DAGSTER_HOME") if previous is None else os.environ.update(DAGSTER_HOME=previous)
    return [run for run in runs if OWNER_RUN_TAG in run.tags]


@pytest.mark.cluster
def test_a_worker_killed_mid_step_hands_it_on_and_mlflow_keeps_one_run_per_model(indexed_cluster):
    from resources.mlflow_tracker import MODEL_KEY_TAG

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
    runs = _mlflow_runs(cluster)
    per_model = Counter(run.data.tags[MODEL_KEY_TAG] for run in runs if MODEL_KEY_TAG in run.data.tags)
    assert len(per_model) == 6 and set(per_model.values()) == {1}, per_model
    assert {run.info.status for run in runs} == {"FINISHED"}
    # `up` brings the killed worker back, leaving the others as they are
    env = _clean_env() | {"SOMMELIER_HOME": cluster.cluster.store_root}
    again = subprocess.run(cluster.up_command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"worker-{victim}   started" in again.stdout, again.stdout


@pytest.mark.cluster
def test_sigterm_stops_sommelier_index_and_the_next_one_resumes_with_one_mlflow_run_per_model(indexed_cluster):
    from dagster import DagsterRunStatus

    from pipelines.cluster_run import STOP_GRACE_S
    from resources.mlflow_tracker import MODEL_KEY_TAG

    cluster = indexed_cluster.cluster
    add_models(cluster.repository, ["conv3", "lin3"])
    seen = {n: len(cluster.worker_log(n)) for n in (1, 2)}
    command = [sys.executable, "-m", "sommelier_cli.main", "index"]
    index = subprocess.Popen(
        command, env=cluster.env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_new_task(cluster, seen)  # a run is in flight, its step on a worker
    canceled_before = len(_index_runs(cluster, [DagsterRunStatus.CANCELED]))
    index.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    out, err = index.communicate(timeout=120)
    stopped_in = time.monotonic() - t0
    assert index.returncode == 143, out + err
    assert "Stopped by SIGTERM" in err, err
    assert stopped_in < STOP_GRACE_S + 30, f"stopping took {stopped_in:.1f}s"
    time.sleep(5)  # the grace the runs' steps get to report
    assert _index_runs_not_ended(cluster) == []
    assert len(_index_runs(cluster, [DagsterRunStatus.CANCELED])) > canceled_before, "no run in flight was canceled"
    print(f"sommelier index stopped {stopped_in:.1f}s after SIGTERM")
    again = cluster.sommelier("index")
    assert again.returncode == 0, again.stdout + again.stderr
    indexed = re.search(r"Indexed (\d+)/(\d+) models", again.stdout)
    assert indexed and indexed[1] == indexed[2], again.stdout
    resource_index = pl.read_parquet(cluster.store / "index" / "resource_index.parquet")
    assert {"lab/conv3", "lab/lin3"} <= set(resource_index["model_id"])
    runs = _mlflow_runs(cluster)
    per_model = Counter(run.data.tags[MODEL_KEY_TAG] for run in runs if MODEL_KEY_TAG in run.data.tags)
    assert len(per_model) == int(indexed[1]) and set(per_model.values()) == {1}, per_model
    assert "RUNNING" not in {run.info.status for run in runs}
    assert _index_runs_not_ended(cluster) == []


@pytest.mark.cluster
def test_a_cluster_index_runs_ranges_of_models_and_a_corrupt_model_in_a_range_fails_alone(indexed_cluster):
    """Last of the tests on the session's cluster: it adds 13 models, one of them not an ONNX file (removed at the
    end, so it fails no later index run)."""
    from dagster import DagsterRunStatus
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG

    from pipelines.cluster_run import range_size

    cluster = indexed_cluster.cluster
    new = [*(f"conv{i}" for i in range(10, 16)), *(f"lin{i}" for i in range(10, 16))]
    add_models(cluster.repository, new)
    corrupt = cluster.repository / "conv13b.onnx"  # in partition order between lab/conv13 and lab/conv14: in a range
    corrupt.write_bytes(b"not an onnx file")
    models = len(new) + 1
    statuses = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    before = {run.run_id for run in _index_runs(cluster, statuses)}
    try:
        run = cluster.sommelier("index")
    finally:
        corrupt.unlink()
    out = run.stdout
    assert run.returncode == 0, out + run.stderr  # one model failed, not every one: the index is built
    indexed = re.search(r"Indexed (\d+)/(\d+) models", out)
    assert indexed and int(indexed[2]) - int(indexed[1]) == 1, out
    # the corrupt model's range failed, then ran one model per run: only the corrupt model fails, with its error
    assert re.search(r"\[ingest\] lab/\S+ … lab/\S+ in one run FAILED \(.*conv13b", out), out
    failed = re.findall(r"\] (\S+)  FAILED: (.*)", out)
    assert [model for model, _ in failed] == ["lab/conv13b"], out
    assert "conv13b.onnx" in failed[0][1]
    resource_index = pl.read_parquet(cluster.store / "index" / "resource_index.parquet")
    assert {f"lab/{name}" for name in new} <= set(resource_index["model_id"])
    assert "lab/conv13b" not in set(resource_index["model_id"])
    # fewer Dagster runs than models per wave: ranges of models (and of models on one device)
    runs = [r for r in _index_runs(cluster, statuses) if r.run_id not in before]
    by_job = Counter(r.job_name for r in runs)
    per_wave = {wave: int(n) for wave, n in re.findall(r"\[(ingest|device|analysis) [\d–]+/(\d+)\]", out)}
    assert per_wave["ingest"] >= models and range_size(per_wave["ingest"], 2, 25) > 1, per_wave
    assert any(ASSET_PARTITION_RANGE_START_TAG in r.tags for r in runs if r.job_name == "index_models")
    assert any(ASSET_PARTITION_RANGE_START_TAG in r.tags for r in runs if r.job_name == "profile_devices")
    # ingest: its ranges, then the corrupt model's range again one run per model; analysis: the good models
    assert by_job["index_models"] < per_wave["ingest"] + per_wave["analysis"], (by_job, per_wave)
    assert by_job["profile_devices"] < per_wave["device"], (by_job, per_wave)
    failed_runs = [r for r in runs if r.status == DagsterRunStatus.FAILURE]
    assert len(failed_runs) == 2, [(r.job_name, r.tags) for r in failed_runs]  # the range, then the model alone


# -- a killed test session's cluster, without a cluster ----------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def _marked_process(state: Path) -> subprocess.Popen:
    """A stand-in for a service of the cluster of `state`: marked as `up` marks its services, in its own session."""
    return subprocess.Popen(SLEEPER, env=os.environ | {SERVICE_MARK_ENV: str(state)}, start_new_session=True)


def _gone(process: subprocess.Popen, timeout_s: float = 20.0) -> bool:
    """Whether `process` ends within `timeout_s` (reaped here: it is this process's child)."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _cluster_state(base: Path, owner: int | None = None) -> Cluster:
    cluster = Cluster(
        state_dir=str(base / "state"),
        store_root=str(base / "store"),
        database_prefix=f"sommelier_test_{os.getpid()}x",  # no such database: dropping it is a no-op
        owner_pid=owner,
        owner_started=None if owner is None else process_start_ticks(owner),
    )
    cluster.save()
    return cluster


def test_a_session_cleans_up_after_a_killed_one_and_leaves_live_sessions_alone(tmp_path):
    sessions = tmp_path / "sessions"
    dead_pid, live_owner = _dead_pid(), subprocess.Popen(SLEEPER)
    dead, live = _cluster_state(tmp_path / "dead"), _cluster_state(tmp_path / "live")
    dead_service, dead_run = _marked_process(dead.state), _marked_process(dead.state)
    (dead.state / "pids").mkdir()
    (dead.state / "pids" / "mlflow.pid").write_text(f"{dead_service.pid}\n")  # the other is found by its mark
    live_service = _marked_process(live.state)
    try:
        RecordedSession(dead_pid, None, dead.state_dir, f"sommelier_test_{dead_pid}").save(sessions)
        RecordedSession(
            live_owner.pid, process_start_ticks(live_owner.pid), live.state_dir, f"sommelier_test_{live_owner.pid}"
        ).save(sessions)
        (sessions / "cut-off.json").write_text("{")
        databases = [
            f"sommelier_test_{dead_pid}_dagster", f"sommelier_test_{dead_pid}_mlflow",
            f"sommelier_test_{live_owner.pid}_dagster", f"sommelier_test_{os.getpid()}_mlflow",
            "sommelier_dagster", "sommelier_test_notapid_dagster",
        ]  # fmt: skip
        dropped: list[str] = []
        cleaned = clean_leftover_sessions(sessions, lambda: databases, dropped.append)
        assert _gone(dead_service) and _gone(dead_run), cleaned
        assert live_service.poll() is None, "a live session's service was stopped"
        # the killed session's databases, and an earlier session's that reused this pid; nothing else
        assert dropped == [databases[0], databases[1], databases[3]]
        assert list(recorded_sessions(sessions)) == [sessions / f"{live_owner.pid}.json"]
        assert f"dropped database {databases[0]}" in cleaned
        assert f"stopped mlflow of the cluster of pytest pid {dead_pid}" in cleaned
        assert f"stopped pid {dead_run.pid} of the cluster of pytest pid {dead_pid}" in cleaned
    finally:
        for process in (dead_service, dead_run, live_service, live_owner):
            process.kill()
            process.wait()


def test_the_watchdog_brings_an_owned_cluster_down_when_its_owner_is_killed(tmp_path):
    owner = subprocess.Popen(SLEEPER)
    cluster = _cluster_state(tmp_path, owner=owner.pid)
    service = _marked_process(cluster.state)
    (cluster.state / "pids").mkdir()
    (cluster.state / "pids" / "worker-1.pid").write_text(f"{service.pid}\n")
    watchdog = start_watchdog(cluster)
    try:
        time.sleep(2)
        assert service.poll() is None and process_alive(watchdog), "the watchdog acted while its owner ran"
        owner.kill()
        owner.wait()
        # generous: on a loaded machine the watchdog (a Python process) takes seconds to notice and to stop it
        assert _gone(service, timeout_s=90), "the service outlived the owner of its cluster"
        deadline = time.monotonic() + 60
        while process_alive(watchdog) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process_alive(watchdog), "the watchdog did not end after bringing the cluster down"
        log = (cluster.state / "logs" / "watchdog.log").read_text()
        assert f"owner pid {owner.pid} is gone" in log and "worker-1" in log, log
    finally:
        for process in (service, owner):
            process.kill()
            process.wait()
        if process_alive(watchdog):
            os.kill(watchdog, signal.SIGKILL)


# -- a stopped cluster driver, without a cluster ----------------------------------------------------------------


def _run_until_killed(run, owner):
    """Stands in for `execute_on_cluster` in the driver's pool: a run whose process ignores SIGTERM (its step would
    go on for minutes), so only the driver's SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)


class _NoRuns:
    """A Dagster instance with no runs to cancel."""

    def get_runs(self, filters=None):
        return []


def test_a_stopped_driver_kills_runs_that_do_not_end_within_the_grace_and_leaves_no_process(monkeypatch):
    import multiprocessing
    import threading

    from pipelines import cluster_run
    from pipelines.index_run import STOP, Interrupted

    monkeypatch.setattr(cluster_run, "execute_on_cluster", _run_until_killed)  # forked pool processes see it too
    runs = [cluster_run.ClusterRun(("onnx_model",), f"lab/m{i}", f"lab/m{i}", f"lab/m{i}") for i in range(4)]
    results: list = []
    stopper = threading.Timer(2.0, lambda: setattr(STOP, "signum", signal.SIGTERM))
    stopper.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            cluster_run.drive_wave(
                runs,
                workers=1,
                on_result=lambda *outcome: results.append(outcome),
                on_stop=lambda in_flight: cluster_run.stop_runs(_NoRuns(), in_flight, grace_s=1.0),
            )
    finally:
        stopper.cancel()
        STOP.signum = None
    assert time.monotonic() - t0 < 15, "the driver waited for runs that would not end"
    assert results == [], "a run was reported although the stop cut it off"
    assert multiprocessing.active_children() == [], "a pool process outlived the stop"

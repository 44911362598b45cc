"""Crash consistency of `sommelier index` (issue 14), with real processes, a real Dagster instance and MLflow store:
one index run per store at a time (the store lock), signals passed on from the command to its indexing process,
and a run killed at any point resumed with nothing lost or duplicated and nothing left STARTED or RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sommelier_core.store.store_lock import STORE_LOCK_FILE, StoreLock, StoreLocked, owner_alive, owner_label
from tests.conftest import mlflow_client

REPO_ROOT = Path(__file__).resolve().parents[1]
SOMMELIER = [sys.executable, "-m", "sommelier_cli.main"]
MODELS = 4

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sommelier_core.store.store_lock import StoreLock
    with StoreLock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)

LEAVE_MLFLOW_RUN_RUNNING = textwrap.dedent(
    """
    import time
    from resources.mlflow_tracker import KIND_TAG, OWNER_TAG, MlflowTracker
    from sommelier_core.store.store_lock import owner_label
    tracker = MlflowTracker()
    client = tracker.client()
    run = client.create_run(tracker._experiment_id(client), tags={KIND_TAG: "index", OWNER_TAG: owner_label()})
    print("run", run.info.run_id, flush=True)
    time.sleep(600)
    """
)

INDEX_FOLDER = textwrap.dedent(
    """
    import sys
    from pipelines import index_run
    from pipelines.definitions import build_resources
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.settings import IndexSettings

    resources = build_resources("local") | {
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="gen", location=[sys.argv[1]])]
        ),
        "settings": IndexSettings(operator_sweep=False, latency_repeats=5, profile_runs=2, partitions_per_run=2),
    }
    sys.exit(index_run.main(sys.argv[2:], resources=resources))
    """
)


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"SOMMELIER_HOME": str(store), "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _start(args: list[str], store: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO_ROOT, env=_env(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def _wait_for_line(process: subprocess.Popen, needle: str, timeout_s: float = 300) -> list[str]:
    """Lines the process printed up to the first holding `needle` (fails if it exits or the time passes first)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never printed; output:\n{''.join(lines)}")


def _holder(store: Path, seconds: float) -> subprocess.Popen:
    holder = _start([sys.executable, "-c", HOLD_LOCK, str(store), str(seconds)], store)
    _wait_for_line(holder, "locked", 60)
    return holder


def _gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not owner_alive(owner_label(pid)):
            return True
        try:  # a zombie child of this test still answers kill(pid, 0): reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


def test_a_second_index_run_on_a_locked_store_says_who_holds_it_and_exits_3(tmp_path):
    holder = _holder(tmp_path, 120)
    try:
        second = subprocess.run(
            [*SOMMELIER, "index"], cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 3, second.stderr
        assert f"another index run holds the store lock on {tmp_path} since " in second.stderr
        assert f"pid {holder.pid} on " in second.stderr
        with pytest.raises(StoreLocked, match=f"pid {holder.pid}"):  # another process's lock, seen from here too
            StoreLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with StoreLock(tmp_path):  # the kernel released the killed holder's lock: nothing to clean up by hand
        assert (tmp_path / STORE_LOCK_FILE).exists()


def test_index_with_wait_starts_once_the_holder_is_done(tmp_path):
    holder = _holder(tmp_path, 4)
    started = time.monotonic()
    waited = subprocess.run(
        [*SOMMELIER, "index", "--wait"], cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    holder.wait()
    assert time.monotonic() - started >= 3  # it waited for the holder rather than failing at once
    assert "store lock" not in waited.stderr
    assert "No models listed" in waited.stdout  # an empty store: it ran, found nothing, left the index alone


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_command_stops_its_indexing_process(tmp_path, signum):
    holder = _holder(tmp_path, 120)  # keeps the indexing process busy (waiting for the lock) while it is signalled
    try:
        command = _start([*SOMMELIER, "index", "--wait"], tmp_path)
        _wait_for_line(command, f"waiting: another index run holds the store lock on {tmp_path} since ")
        (child_pid,) = Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text().split()
        command.send_signal(signum)
        assert command.wait(timeout=60) == 128 + signum
        assert "Stopped by " + signal.Signals(signum).name in command.stdout.read()
        assert _gone(int(child_pid))
    finally:
        holder.kill()
        holder.wait()


def test_the_indexing_process_stops_when_the_command_is_killed_outright(tmp_path):
    holder = _holder(tmp_path, 120)
    try:
        command = _start([*SOMMELIER, "index", "--wait"], tmp_path)
        _wait_for_line(command, "waiting: another index run holds the store lock")
        children = Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text().split()
        assert len(children) == 1
        command.kill()  # SIGKILL: the command cannot pass anything on
        command.wait()
        assert _gone(int(children[0]))  # the child saw its parent go and stopped itself
    finally:
        holder.kill()
        holder.wait()


def test_an_mlflow_run_left_running_by_a_killed_process_is_marked_killed_by_the_next_index_run(tmp_path):
    leaver = _start([sys.executable, "-c", LEAVE_MLFLOW_RUN_RUNNING], tmp_path)
    run_id = _wait_for_line(leaver, "run ", 120)[-1].split()[-1]
    leaver.kill()
    leaver.wait()
    client = mlflow_client(tmp_path / 'mlflow' / 'mlflow.db')
    assert client.get_run(run_id).info.status == "RUNNING"
    result = subprocess.run(
        [*SOMMELIER, "index"], cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert f"MLflow run {run_id} was left RUNNING by a killed index run: KILLED" in result.stdout
    assert client.get_run(run_id).info.status == "KILLED"


def _index_folder(store: Path, folder: Path, *args: str) -> subprocess.Popen:
    return _start([sys.executable, "-c", INDEX_FOLDER, str(folder), *args], store)


def _dagster_runs(store: Path) -> list:
    from dagster import DagsterInstance

    with DagsterInstance.from_ref(DagsterInstance.local_temp(str(store / "dagster")).get_ref()) as instance:
        return list(instance.get_runs())


@pytest.fixture
def folder(tmp_path) -> Path:
    from sommelier_bench.index_cost import generate_onnx_repository

    generate_onnx_repository(tmp_path / "repository", MODELS)
    return tmp_path / "repository"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_an_index_run_killed_mid_wave_resumes_with_nothing_lost_duplicated_or_left_started(tmp_path, folder, signum):
    store = tmp_path / "store"
    first = _index_folder(store, folder)
    _wait_for_line(first, "[ingest 1–2/")  # two models through wave 1 in one run, the next two's run under way
    time.sleep(0.5)
    first.send_signal(signum)
    first.wait(timeout=120)
    if signum == signal.SIGTERM:  # stopped cleanly: it closed its own runs before exiting
        assert first.returncode == 128 + signum
        assert not [r for r in _dagster_runs(store) if r.status.value in ("STARTED", "STARTING")]

    second = _index_folder(store, folder)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert f"Indexed {MODELS}/{MODELS} models" in output
    statuses = {r.status.value for r in _dagster_runs(store)}
    assert statuses <= {"SUCCESS", "CANCELED", "FAILURE"}, statuses  # nothing left STARTED for ever

    import polars as pl

    resource = pl.read_parquet(store / "index" / "resource_index.parquet")
    assert resource["model_id"].n_unique() == MODELS  # nothing lost
    client = mlflow_client(store / 'mlflow' / 'mlflow.db')
    experiment = client.get_experiment_by_name("sommelier")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    model_runs = [r.data.tags["sommelier.model_id"] for r in runs if r.data.tags.get("sommelier.kind") == "model"]
    assert sorted(model_runs) == sorted(set(model_runs)) and len(model_runs) == MODELS  # one run per model
    for model_id in model_runs:
        versions = client.search_model_versions(f"name = '{model_id.replace('/', '__')}'")
        assert len(versions) == 1, model_id  # registered once

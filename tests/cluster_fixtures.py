"""The local cluster for tests: brought up by `deploy/local-cluster up` on test-only databases, queue, ports and
store under a temporary directory, and brought down (databases dropped) afterwards.

A killed test session cannot bring its cluster down, so: the cluster is owned by the session's pytest process
(`up --owner-pid`), whose watchdog brings it down and drops its databases when that process is gone; and each
session, before it starts its own, stops the services and drops the databases (`sommelier_test_<pid>_*`) that an
earlier session whose pytest process is gone left behind (`clean_leftover_sessions`, from the records under
`SESSIONS_DIR`).

Skipped, naming the missing service, where PostgreSQL or RabbitMQ does not answer: only the `cluster` tests skip.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from deploy.local_cluster import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    WATCHDOG,
    Cluster,
    cluster_processes,
    kill_processes,
    log_file,
    missing_services,
    process_alive,
    process_start_ticks,
    services,
    stop,
    wait_for_first_sensor_tick,
)
from sommelier_core.settings import (
    CELERY_BROKER_ENV,
    CELERY_QUEUE_ENV,
    DAGSTER_UI_ENV,
    DEFAULT_CELERY_BROKER,
    DEPLOYMENT_ENV,
    INDEX_SETTINGS_ENV,
    MLFLOW_UI_ENV,
    REPOSITORIES_ENV,
    STORE_ROOT_ENV,
)
from tests.digits_models import dynamic_digits_classifier, fixed_digits_classifier

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO_ROOT / "deploy" / "local-cluster"
TEST_INDEX_SETTINGS = {"operator_sweep": False}
"""No calibration sweep in the operator table (minutes on two cores); the embedded run gets the same settings."""
CLUSTER_VARIABLES = (
    DEPLOYMENT_ENV, STORE_ROOT_ENV, "DAGSTER_HOME", "MLFLOW_TRACKING_URI", MLFLOW_UI_ENV, DAGSTER_UI_ENV,
    CELERY_QUEUE_ENV, REPOSITORIES_ENV, INDEX_SETTINGS_ENV,
)  # fmt: skip
"""A user's cluster's variables, kept out of the tests' environment (not the broker's: it says where RabbitMQ is)."""
TEST_DATABASE_PREFIX = "sommelier_test_"
TEST_DATABASE = re.compile(r"^sommelier_test_(\d+)_[a-z]+$")
"""A test session's databases: `sommelier_test_<pytest pid>_<purpose>`."""
SESSIONS_DIR = Path(tempfile.gettempdir()) / "sommelier-cluster-tests"
"""One record per test session that brought a cluster up, `<pid>.json`: its pytest pid and start time, the
cluster's state directory and database prefix; removed when the session brings its cluster down."""


@dataclass(frozen=True)
class RecordedSession:
    """A test session's cluster, as recorded under `SESSIONS_DIR`."""

    pid: int
    started: int | None
    state_dir: str
    tag: str

    def alive(self) -> bool:
        """Whether the session's pytest process still runs (the same one: its start time matches)."""
        return process_alive(self.pid, self.started)

    def save(self, sessions_dir: Path) -> Path:
        sessions_dir.mkdir(parents=True, exist_ok=True)
        path = sessions_dir / f"{self.pid}.json"
        path.write_text(json.dumps(asdict(self)) + "\n")
        return path


def recorded_sessions(sessions_dir: Path) -> dict[Path, RecordedSession | None]:
    """The records under `sessions_dir`, each read back (None: unreadable, a session cut off while writing it)."""
    found: dict[Path, RecordedSession | None] = {}
    for path in sorted(sessions_dir.glob("*.json")) if sessions_dir.exists() else []:
        try:
            found[path] = RecordedSession(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            found[path] = None
    return found


def stale_test_databases(names: list[str], live_pids: set[int], own_pid: int) -> list[str]:
    """The test databases among `names` to drop: those of a pytest pid that no longer runs, and those named after
    `own_pid` (this session has not created its own yet, so they are an earlier session's whose pid it reuses).
    A pid in `live_pids` (a live session's) keeps its databases; other databases are never touched."""
    stale = []
    for name in names:
        match = TEST_DATABASE.match(name)
        if match is None:
            continue
        pid = int(match[1])
        if pid == own_pid or (pid not in live_pids and not process_alive(pid)):
            stale.append(name)
    return stale


def stop_session_processes(state_dir: Path) -> list[str]:
    """Stop what an earlier session's cluster left running: its watchdog and services by their pid files (with
    their process groups), then any process still marked as that cluster's; what was stopped, by name or pid."""
    cluster = Cluster.load(state_dir)
    stopped = []
    if cluster is not None:
        stopped = stop(cluster, [WATCHDOG, *(service.name for service in reversed(services(cluster)))])
    left = cluster_processes(state_dir)
    kill_processes(left)
    return stopped + [f"pid {pid}" for pid in left]


def clean_leftover_sessions(
    sessions_dir: Path,
    list_databases: Callable[[], list[str]],
    drop_database: Callable[[str], None],
    own_pid: int | None = None,
) -> list[str]:
    """Before a session brings its cluster up: stop the processes, and drop the databases, of every earlier session
    whose pytest process is gone, and forget its record. Sessions still running are left alone. Returns one line
    per thing cleaned, for the session's log."""
    own_pid = os.getpid() if own_pid is None else own_pid
    cleaned: list[str] = []
    live_pids: set[int] = set()
    for path, session in recorded_sessions(sessions_dir).items():
        if session is not None and session.alive() and session.pid != own_pid:
            live_pids.add(session.pid)
            continue
        if session is not None:
            for stopped in stop_session_processes(Path(session.state_dir)):
                cleaned.append(f"stopped {stopped} of the cluster of pytest pid {session.pid}")
        path.unlink(missing_ok=True)
    for name in stale_test_databases(list_databases(), live_pids, own_pid):
        drop_database(name)
        cleaned.append(f"dropped database {name}")
    return cleaned


def _postgres():
    import psycopg2

    connection = psycopg2.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres")
    connection.autocommit = True
    return connection


def list_test_databases() -> list[str]:
    """The PostgreSQL databases whose names start with the tests' prefix."""
    connection = _postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (TEST_DATABASE_PREFIX + "%",))
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def drop_test_database(name: str) -> None:
    """Drop one test database, closing the connections a killed session's services left to it."""
    if TEST_DATABASE.match(name) is None:
        raise ValueError(f"refusing to drop {name!r}: not a test database (expected {TEST_DATABASE.pattern})")
    connection = _postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


@dataclass
class RunningCluster:
    """A cluster `deploy/local-cluster up` started for the tests, and the repository folder it indexes."""

    cluster: Cluster
    repository: Path
    up_command: list[str]

    @property
    def store(self) -> Path:
        return Path(self.cluster.store_root)

    def env(self) -> dict[str, str]:
        """This process's environment pointed at the cluster, as `eval "$(deploy/local-cluster env)"` does."""
        return _clean_env() | self.cluster.environment()

    def sommelier(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
        """Run the `sommelier` CLI against the cluster."""
        command = [sys.executable, "-m", "sommelier_cli.main", *args]
        return subprocess.run(command, env=self.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)

    def worker_log(self, n: int) -> str:
        return log_file(self.cluster, f"worker-{n}").read_text(errors="replace")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CLUSTER_VARIABLES}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_models(folder: Path, names: list[str]) -> None:
    """Digits classifiers of both families in an ONNX-folder repository (`conv<i>`: conv net; `lin<i>`: linear)."""
    for name in names:
        seed = int(name.removeprefix("conv").removeprefix("lin"))
        (dynamic_digits_classifier if name.startswith("conv") else fixed_digits_classifier)(
            folder / f"{name}.onnx", seed
        )


def up(state: Path, store: Path, repository: Path, tag: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    command = [
        str(LOCAL_CLUSTER), "up", "--workers", "2", "--state-dir", str(state),
        "--database-prefix", tag, "--queue", tag.replace("_", "-"),
        "--dagster-port", str(free_port()), "--mlflow-port", str(free_port()),
        "--repository", f"onnx:lab:{repository}", "--index-settings", json.dumps(TEST_INDEX_SETTINGS),
        "--owner-pid", str(os.getpid()),
    ]  # fmt: skip
    env = _clean_env() | {STORE_ROOT_ENV: str(store)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600), command


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory) -> Iterator[RunningCluster]:
    """The cluster, up for the session: 2 workers, on an ONNX folder of four models written after the sensor's
    first tick. What a killed earlier session left is cleaned first; this session's cluster dies with it."""
    problems = missing_services(os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER)
    if problems:
        pytest.skip("the cluster tests need PostgreSQL and RabbitMQ: " + "; ".join(problems))
    for line in clean_leftover_sessions(SESSIONS_DIR, list_test_databases, drop_test_database):
        print(f"cluster tests: {line} (left by a killed test session)", file=sys.stderr)
    base = tmp_path_factory.mktemp("cluster")
    state, store, repository = base / "state", base / "store", base / "lab"
    repository.mkdir()
    tag = f"{TEST_DATABASE_PREFIX}{os.getpid()}"
    record = RecordedSession(os.getpid(), process_start_ticks(os.getpid()), str(state), tag).save(SESSIONS_DIR)
    try:
        result, command = up(state, store, repository, tag)
        assert result.returncode == 0, f"deploy/local-cluster up failed:\n{result.stdout}\n{result.stderr}"
        cluster = Cluster.load(state)
        # models written after the sensor's first tick are indexed by `sommelier index` alone, not also by its runs
        assert wait_for_first_sensor_tick(cluster), (
            f"the daemon's sensor never ticked; see {log_file(cluster, 'daemon')}"
        )
        add_models(repository, ["conv0", "conv1", "lin0", "lin1"])
        yield RunningCluster(cluster, repository, command)
    finally:
        subprocess.run(
            [str(LOCAL_CLUSTER), "down", "--state-dir", str(state), "--drop-databases"],
            env=_clean_env(), capture_output=True, timeout=120,
        )  # fmt: skip
        record.unlink(missing_ok=True)

"""`deploy/local-cluster up|down|status|env`: Sommelier's Dagster deployment on one machine, as separate services.

`up` writes a Dagster instance directory (`dagster.yaml`: PostgreSQL storage, the queued run coordinator with
concurrency limits, the default run launcher), creates the PostgreSQL databases, and starts — each a background
process in its own session, with a pid file and a log under the cluster's state directory — the MLflow tracking
server (PostgreSQL backend, artifact serving into the store), N Celery workers (each runs the steps of any run),
`dagster-daemon` (the repository sensor, the nightly schedule, the run queue) and the Dagster webserver. A service
already up is left as it is, so `up` is idempotent. `status` says which are up (and whether PostgreSQL and
RabbitMQ are reachable); `down` stops them; `env` prints the variables that point `sommelier` at the cluster.
`up --owner-pid PID` ties the cluster to a process (the test session): a watchdog process brings the cluster down
and drops its databases once that process is gone, however it ended (even SIGKILL).
The services, and how they map onto several machines or Kubernetes, are described in `docs/deployment.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sommelier_core.inference import STAGE_THREADS_ENV
from sommelier_core.settings import (
    CELERY_BROKER_ENV,
    CELERY_QUEUE_ENV,
    DAGSTER_UI_ENV,
    DEFAULT_CELERY_BROKER,
    DEFAULT_CELERY_QUEUE,
    DEPLOYMENT_ENV,
    INDEX_SETTINGS_ENV,
    MLFLOW_ARTIFACTS_DIR_ENV,
    MLFLOW_UI_ENV,
    REPOSITORIES_ENV,
    STORE_ROOT_ENV,
    celery_settings,
    store_root,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the services load their code from (`workspace.yaml`, `pipelines.definitions`)."""
STATE_FILE = "cluster.json"
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
READY_TIMEOUT_S = 240.0
"""How long `up` waits for a service to answer before calling it failed (two loaded cores start MLflow slowly)."""
SERVICE_MARK_ENV = "SOMMELIER_CLUSTER_STATE"
"""Set, to the state directory, in the environment of every service `up` starts (and so of every process they
start): how `down` and the tests' clean-up find a cluster's processes when a pid file is lost. Never set in a
user's shell, unlike `DAGSTER_HOME`, so matching on it cannot hit the shell that runs `down`."""
WATCHDOG = "watchdog"
"""The process `up --owner-pid` starts to bring the cluster down when its owner is gone (not a service)."""
WATCH_POLL_S = 1.0


@dataclass
class Cluster:
    """What `up` was asked for, kept in `<state_dir>/cluster.json` so `status`, `down` and `env` find the same."""

    state_dir: str
    store_root: str
    workers: int = 2
    database_prefix: str = "sommelier"
    queue: str = DEFAULT_CELERY_QUEUE
    broker: str = DEFAULT_CELERY_BROKER
    dagster_port: int = 3000
    mlflow_port: int = 5000
    repositories: list[dict] = field(default_factory=list)
    index_settings: dict = field(default_factory=dict)
    webserver: bool = True
    owner_pid: int | None = None
    """The process this cluster belongs to (`--owner-pid`): when it is gone, the watchdog brings the cluster down
    and drops its databases. None: the cluster runs until `down`."""
    owner_started: int | None = None
    """The owner's start time (clock ticks since boot, `/proc/<pid>/stat`): a later process reusing its pid is not
    taken for it."""

    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    @property
    def dagster_home(self) -> Path:
        return self.state / "dagster_home"

    def database(self, purpose: str) -> str:
        """The PostgreSQL database of `purpose` (`dagster`, `mlflow`)."""
        return f"{self.database_prefix}_{purpose}"

    def postgres_url(self, purpose: str) -> str:
        """The database's URL, with the driver named (MLflow otherwise asks SQLAlchemy for psycopg 3)."""
        return f"postgresql+psycopg2://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{self.database(purpose)}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.dagster_port}"

    @property
    def artifacts_destination(self) -> Path:
        """Where the MLflow server keeps the artifacts it serves: on the shared store, so workers hard-link into it."""
        return Path(self.store_root) / "mlflow-artifacts"

    def environment(self) -> dict[str, str]:
        """The variables that point `sommelier` (and every service) at this cluster: what `env` prints."""
        env = {
            DEPLOYMENT_ENV: "cluster",
            STORE_ROOT_ENV: self.store_root,
            "DAGSTER_HOME": str(self.dagster_home),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            MLFLOW_UI_ENV: self.mlflow_url,
            MLFLOW_ARTIFACTS_DIR_ENV: str(self.artifacts_destination),
            DAGSTER_UI_ENV: self.dagster_url,
            CELERY_BROKER_ENV: self.broker,
            CELERY_QUEUE_ENV: self.queue,
        }
        if self.repositories:
            env[REPOSITORIES_ENV] = json.dumps(self.repositories)
        if self.index_settings:
            env[INDEX_SETTINGS_ENV] = json.dumps(self.index_settings)
        return env

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Cluster | None:
        path = state_dir / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


@dataclass(frozen=True)
class Service:
    """One background process of the cluster: its command and how to tell it is ready."""

    name: str
    command: list[str]
    ready_url: str | None = None
    ready_log_line: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Variables of its own, beside the cluster's (`Cluster.environment`)."""


def worker_threads(celery_workers: int, cores: int | None = None) -> int:
    """ONNX Runtime threads per session of each worker's stages: the machine's cores shared out among its workers
    (at least 1). ONNX Runtime's default is a thread per core in every session, so two workers on two cores each
    ran two threads: the workers' CPU seconds for the same 48 models rose from 20.4 with one worker to 27.7 with
    two (`benchmarks/cluster_scaling.py`), and to 24.7 once each had one."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, celery_workers))


def mlflow_server_workers(celery_workers: int) -> int:
    """Processes of the MLflow tracking server: one per Celery worker, at least 2. Every step logs to it, and a
    step waits for each request (about 27 per model, a dozen of them to register its version); with one server
    process the workers' requests queue behind each other (py-spy: 13 s of a worker's 70 waiting for answers)."""
    return max(2, celery_workers)


def services(cluster: Cluster) -> list[Service]:
    """The cluster's processes, in start order (MLflow before the workers that log to it)."""
    python = sys.executable
    workspace = str(REPO_ROOT / "workspace.yaml")
    found = [
        Service(
            "mlflow",
            [
                python,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                cluster.postgres_url("mlflow"),
                "--serve-artifacts",
                "--artifacts-destination",
                str(cluster.artifacts_destination),
                "--host",
                "127.0.0.1",
                "--port",
                str(cluster.mlflow_port),
                "--workers",
                str(mlflow_server_workers(cluster.workers)),
            ],
            ready_url=f"{cluster.mlflow_url}/health",
        )
    ]
    for i in range(1, cluster.workers + 1):
        found.append(
            Service(
                f"worker-{i}",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "deploy.celery_app",
                    "worker",
                    "--pool",
                    "solo",
                    "--queues",
                    cluster.queue,
                    "--hostname",
                    f"{cluster.queue}-{i}@%h",
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                ready_log_line="ready.",
                env={STAGE_THREADS_ENV: str(worker_threads(cluster.workers))},
            )
        )
    found.append(Service("daemon", [python, "-m", "dagster._daemon", "run", "-w", workspace]))
    if cluster.webserver:
        found.append(
            Service(
                "webserver",
                [
                    python,
                    "-m",
                    "dagster_webserver",
                    "-w",
                    workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(cluster.dagster_port),
                ],
                ready_url=f"{cluster.dagster_url}/server_info",
            )
        )
    return found


def dagster_yaml(cluster: Cluster) -> str:
    """The instance configuration every service and `sommelier index` share.

    Runs launched by the daemon (sensor, schedule, the UI's Materialize) wait in the queue: at most four at once,
    and at most one per partition, so two runs never materialize the same model at the same time; `sommelier
    index` itself takes the store lock.
    """
    return f"""# written by deploy/local-cluster up
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url: {cluster.postgres_url("dagster")}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: dagster/job_name
        value: build_index
        limit: 1
run_launcher:
  module: dagster._core.launcher
  class: DefaultRunLauncher
"""


def celery_config_module(cluster: Cluster) -> str:
    """`dagster_celery_config.py`, which `dagster_celery.app` reads in each worker: the same settings as the
    executor's (`sommelier_core.settings.celery_settings`)."""
    lines = [f"broker_url = {cluster.broker!r}", "result_backend = 'rpc://'"]
    settings = celery_settings() | {"task_default_queue": cluster.queue}
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    return "# written by deploy/local-cluster up\n" + "\n".join(lines) + "\n"


# -- reachability of what the cluster needs ---------------------------------------------------------------------


def postgres_problem() -> str | None:
    """None when PostgreSQL answers; else a one-line message naming it and how to start it."""
    import psycopg2

    try:
        psycopg2.connect(
            host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL is not reachable at {POSTGRES_HOST}:{POSTGRES_PORT} as user {POSTGRES_USER} ({reason}); "
            "start it (e.g. `service postgresql start`)"
        )
    return None


def rabbitmq_problem(broker: str) -> str | None:
    """None when the Celery broker accepts a connection; else a one-line message naming it."""
    from kombu import Connection

    try:
        with Connection(broker, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors (socket, AMQP access refused, ...)
        where = _without_password(broker)
        return f"RabbitMQ is not reachable at {where} ({exc}); start it (e.g. `service rabbitmq-server start`)"
    return None


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}{at}{host}" if at else url


def missing_services(broker: str = DEFAULT_CELERY_BROKER) -> list[str]:
    """A message per service the cluster needs that does not answer (PostgreSQL, RabbitMQ); [] when both do."""
    return [p for p in (postgres_problem(), rabbitmq_problem(broker)) if p]


def ensure_databases(cluster: Cluster) -> None:
    """Create the cluster's PostgreSQL databases when missing."""
    import psycopg2

    connection = psycopg2.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for purpose in ("dagster", "mlflow"):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cluster.database(purpose),))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{cluster.database(purpose)}"')
    finally:
        connection.close()


def drop_databases(cluster: Cluster) -> None:
    """Drop the cluster's PostgreSQL databases (its run history and MLflow runs), as tests do after `down`."""
    import psycopg2

    connection = psycopg2.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for purpose in ("dagster", "mlflow"):
                cursor.execute(f'DROP DATABASE IF EXISTS "{cluster.database(purpose)}" WITH (FORCE)')
    finally:
        connection.close()


# -- processes ----------------------------------------------------------------------------------------------------


def _pid_file(cluster: Cluster, name: str) -> Path:
    return cluster.state / "pids" / f"{name}.pid"


def log_file(cluster: Cluster, name: str) -> Path:
    """Where a service's output goes."""
    return cluster.state / "logs" / f"{name}.log"


def service_pid(cluster: Cluster, name: str) -> int | None:
    """The pid of a running service, or None (no pid file, or its process is gone)."""
    path = _pid_file(cluster, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return None if _is_zombie(pid) else pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def is_ready(cluster: Cluster, service: Service) -> bool:
    """Whether a started service is serving: its URL answers, or its log says it is ready."""
    if service_pid(cluster, service.name) is None:
        return False
    if service.ready_url:
        return _answers(service.ready_url)
    if service.ready_log_line:
        log = log_file(cluster, service.name)
        return log.exists() and service.ready_log_line in log.read_text(errors="replace")
    return True


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start(cluster: Cluster, service: Service) -> int:
    """Start a service in its own session (so `down` stops it and whatever it spawned), output to its log."""
    import subprocess

    log = log_file(cluster, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    _pid_file(cluster, service.name).parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | cluster.environment() | service.env | {SERVICE_MARK_ENV: str(cluster.state)}
    env["PYTHONPATH"] = os.pathsep.join([str(cluster.state / "celery"), str(REPO_ROOT)])
    with open(log, "ab") as out:
        process = subprocess.Popen(
            service.command,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(cluster, service.name).write_text(f"{process.pid}\n")
    return process.pid


def stop(cluster: Cluster, names: list[str], timeout_s: float = 20.0) -> list[str]:
    """Stop services and the processes they started (each its session's process group): SIGTERM to all at once,
    SIGKILL to any group still alive after `timeout_s`. Returns the names of those that were running."""
    groups = {}
    for name in names:
        pid = service_pid(cluster, name)
        _pid_file(cluster, name).unlink(missing_ok=True)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        groups[name] = pid
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_group_alive(pgid) for pgid in groups.values()):
        time.sleep(0.2)
    for pgid in groups.values():
        if not _group_alive(pgid):
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return list(groups)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # the group is empty but for zombies once its leader (reaped by no one here) is a zombie and nothing else is left
    return any(
        not _is_zombie(int(p.name))
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _pgid_of(int(p.name)) == pgid
    )


def _pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None when it does not exist (or is a zombie): with
    the pid, it names one process, not whichever reuses the pid later."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` runs (and, given `started`, is the one that started then)."""
    ticks = process_start_ticks(pid)
    return ticks is not None and (started is None or ticks == started)


def cluster_processes(state_dir: Path) -> list[int]:
    """The processes started for the cluster of `state_dir` (its services and whatever they started), found by the
    `SERVICE_MARK_ENV` entry of their environment; this process is never among them."""
    mark = f"{SERVICE_MARK_ENV}={Path(state_dir)}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if mark in environ.split(b"\0") and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def kill_processes(pids: list[int], timeout_s: float = 10.0) -> None:
    """SIGTERM to each of `pids`, SIGKILL to those still alive after `timeout_s`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout_s if signum == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
            time.sleep(0.1)


def stop_everything(cluster: Cluster) -> list[str]:
    """Stop every service (by pid file, with its process group), then any process still marked as the cluster's
    (e.g. a run process the daemon started in a session of its own); the names of the services that were up."""
    names = [service.name for service in reversed(services(cluster))]
    stopped = stop(cluster, names)
    kill_processes([pid for pid in cluster_processes(cluster.state) if pid != _watchdog_pid(cluster)])
    return stopped


def _watchdog_pid(cluster: Cluster) -> int | None:
    return service_pid(cluster, WATCHDOG)


def start_watchdog(cluster: Cluster) -> int:
    """Start the watchdog of an owned cluster (unless it runs): its own session, like the services, so it outlives
    `up` and its owner."""
    import subprocess

    running = _watchdog_pid(cluster)
    if running is not None:
        return running
    log = log_file(cluster, WATCHDOG)
    log.parent.mkdir(parents=True, exist_ok=True)
    _pid_file(cluster, WATCHDOG).parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "deploy.local_cluster", "watch", "--state-dir", str(cluster.state)]
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    _pid_file(cluster, WATCHDOG).write_text(f"{process.pid}\n")
    return process.pid


def watch_owner(cluster: Cluster, poll_s: float = WATCH_POLL_S, drop: bool = True, echo=print) -> None:
    """Wait until the cluster's owner process is gone, then stop every service and (with `drop`) drop the
    databases: what the owner's own clean-up would have done had it not been killed. Returns at once for a cluster
    without an owner."""
    if cluster.owner_pid is None:
        return
    while process_alive(cluster.owner_pid, cluster.owner_started):
        time.sleep(poll_s)
    echo(f"owner pid {cluster.owner_pid} is gone: bringing the cluster in {cluster.state} down")
    for name in stop_everything(cluster):
        echo(f"  {name:<10} stopped")
    if drop:
        try:
            drop_databases(cluster)
            echo(f"  databases {cluster.database('dagster')}, {cluster.database('mlflow')} dropped")
        except Exception as exc:  # PostgreSQL gone too: nothing more this process can do
            names = f"{cluster.database('dagster')}, {cluster.database('mlflow')}"
            echo(f"error: could not drop the databases {names}: {exc}")
    _pid_file(cluster, WATCHDOG).unlink(missing_ok=True)


def wait_for_first_sensor_tick(cluster: Cluster, timeout_s: float = 120.0) -> bool:
    """Wait until the daemon has evaluated the repository sensor once (it does on start; the next tick is
    minutes away); False on timeout. Tests and benchmarks add their models after it, so that `sommelier index`
    alone indexes them rather than racing the sensor's runs."""
    deadline = time.monotonic() + timeout_s
    log = log_file(cluster, "daemon")
    while time.monotonic() < deadline:
        if log.exists() and SENSOR_TICK_LINE in log.read_text(errors="replace"):
            time.sleep(3)  # the tick itself: an empty repository requests no run
            return True
        time.sleep(1)
    return False


SENSOR_TICK_LINE = "Checking for new runs for sensor: repository_sensor"
"""What dagster-daemon logs when it evaluates the repository sensor."""


# -- commands -----------------------------------------------------------------------------------------------------


def up(cluster: Cluster, echo=print) -> int:
    """Bring every service up (those already up are left alone); 0 when all answer, 2 when a need is missing."""
    problems = missing_services(cluster.broker)
    if problems:
        for problem in problems:
            echo(f"error: {problem}")
        return 2
    previous = Cluster.load(cluster.state)
    if (
        previous is not None
        and any(service_pid(previous, s.name) for s in services(previous))
        and (asdict(previous) != asdict(cluster))
    ):
        echo(f"error: a cluster with other settings is up in {cluster.state}; run `down` first")
        return 2
    cluster.save()
    ensure_databases(cluster)
    cluster.dagster_home.mkdir(parents=True, exist_ok=True)
    (cluster.dagster_home / "dagster.yaml").write_text(dagster_yaml(cluster))
    (cluster.state / "celery").mkdir(parents=True, exist_ok=True)
    (cluster.state / "celery" / "dagster_celery_config.py").write_text(celery_config_module(cluster))
    Path(cluster.store_root).mkdir(parents=True, exist_ok=True)
    wanted = services(cluster)
    for service in wanted:
        if service_pid(cluster, service.name) is not None:
            echo(f"  {service.name:<10} already up (pid {service_pid(cluster, service.name)})")
            continue
        port = _service_port(cluster, service)
        if port is not None and _port_taken(port):
            echo(f"error: port {port} for {service.name} is taken by another process; pass another port")
            return 2
        pid = start(cluster, service)
        echo(f"  {service.name:<10} started (pid {pid}, log {log_file(cluster, service.name)})")
        if service.name == "mlflow" and not _wait_ready(cluster, service):  # the workers log to it
            echo(f"error: mlflow did not come up; see {log_file(cluster, service.name)}")
            return 1
    if cluster.owner_pid is not None:
        watchdog = start_watchdog(cluster)
        echo(f"  {WATCHDOG:<10} pid {watchdog}: brings the cluster down when pid {cluster.owner_pid} exits")
    failed = [s.name for s in wanted if not _wait_ready(cluster, s)]
    for name in failed:
        echo(f"error: {name} did not come up; see {log_file(cluster, name)}")
    if not failed:
        echo(f"Cluster up: Dagster {cluster.dagster_url}, MLflow {cluster.mlflow_url}, {cluster.workers} workers.")
        echo(f'Point sommelier at it: eval "$(deploy/local-cluster env --state-dir {cluster.state})"')
    return 1 if failed else 0


def _service_port(cluster: Cluster, service: Service) -> int | None:
    return {"mlflow": cluster.mlflow_port, "webserver": cluster.dagster_port}.get(service.name)


def _wait_ready(cluster: Cluster, service: Service) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if is_ready(cluster, service):
            return True
        if service_pid(cluster, service.name) is None:
            return False
        time.sleep(0.5)
    return False


def down(cluster: Cluster, echo=print, drop: bool = False) -> int:
    """Stop the watchdog (if any), every service and what they started; with `drop`, drop the databases too."""
    stop(cluster, [WATCHDOG])
    for name in stop_everything(cluster):
        echo(f"  {name:<10} stopped")
    if drop:
        drop_databases(cluster)
        echo(f"  databases {cluster.database('dagster')}, {cluster.database('mlflow')} dropped")
    return 0


def status(cluster: Cluster, echo=print) -> int:
    """Print each service and whether it is up; 0 when all are, 1 otherwise."""
    problems = missing_services(cluster.broker)
    for problem in problems:
        echo(f"! {problem}")
    all_up = not problems
    for service in services(cluster):
        pid = service_pid(cluster, service.name)
        ready = pid is not None and is_ready(cluster, service)
        all_up &= ready
        where = {"mlflow": cluster.mlflow_url, "webserver": cluster.dagster_url}.get(service.name, "")
        state = f"up (pid {pid})" if ready else ("starting" if pid is not None else "down")
        echo(f"  {service.name:<10} {state:<18} {where}".rstrip())
    echo(f"  store      {cluster.store_root}")
    return 0 if all_up else 1


def _repository(spec: str) -> dict:
    kind, _, rest = spec.partition(":")
    name, _, location = rest.partition(":")
    if not (kind and name and location):
        raise argparse.ArgumentTypeError(f"--repository {spec!r}: expected KIND:NAME:PATH (e.g. onnx:lab:/models)")
    return {"kind": kind, "name": name, "location": [str(Path(location).resolve())]}


def _index_settings(text: str) -> dict:
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--index-settings: not JSON ({exc})") from exc
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"--index-settings {text!r}: expected a JSON object")
    return settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploy/local-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "watch"])
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="pid files, logs, dagster.yaml (default: <store root>/cluster)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument(
        "--database-prefix", default="sommelier", help="PostgreSQL databases <prefix>_dagster, <prefix>_mlflow"
    )
    parser.add_argument("--queue", default=DEFAULT_CELERY_QUEUE, help="Celery queue of this cluster's steps")
    parser.add_argument(
        "--repository",
        action="append",
        type=_repository,
        default=[],
        metavar="KIND:NAME:PATH",
        help="a repository to index (repeatable; default: the built-in zoo under the store root)",
    )
    parser.add_argument(
        "--index-settings",
        type=_index_settings,
        default={},
        metavar="JSON",
        help="index settings for every run, e.g. '{\"operator_sweep\": false}' (fields of IndexSettings)",
    )
    parser.add_argument("--no-webserver", action="store_true", help="start no Dagster webserver")
    parser.add_argument("--drop-databases", action="store_true", help="with down: drop the cluster's databases")
    parser.add_argument(
        "--owner-pid",
        type=int,
        default=None,
        help="with up: bring the cluster down, databases dropped, once this process is gone (test sessions)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `deploy/local-cluster`."""
    args = _parser().parse_args(argv)
    root = store_root()
    state_dir = (args.state_dir or root / "cluster").resolve()
    saved = Cluster.load(state_dir)
    if args.command == "up":
        if args.workers < 1:
            print("error: --workers must be at least 1", file=sys.stderr)
            return 2
        cluster = Cluster(
            state_dir=str(state_dir),
            store_root=str(root),
            workers=args.workers,
            database_prefix=args.database_prefix,
            queue=args.queue,
            broker=os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER,
            dagster_port=args.dagster_port,
            mlflow_port=args.mlflow_port,
            repositories=args.repository,
            index_settings=args.index_settings,
            webserver=not args.no_webserver,
            owner_pid=args.owner_pid,
            owner_started=None if args.owner_pid is None else process_start_ticks(args.owner_pid),
        )
        if cluster.owner_pid is not None and cluster.owner_started is None:
            print(f"error: --owner-pid {cluster.owner_pid}: no such process", file=sys.stderr)
            return 2
        return up(cluster)
    if saved is None:
        print(f"No cluster was brought up in {state_dir} (no {STATE_FILE}); run `deploy/local-cluster up` first.")
        return 0 if args.command == "down" else 1
    if args.command == "down":
        return down(saved, drop=args.drop_databases)
    if args.command == "status":
        return status(saved)
    if args.command == "watch":
        watch_owner(saved)
        return 0
    for name, value in saved.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

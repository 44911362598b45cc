"""The local cluster for tests: brought up by `deploy/local-cluster up` on test-only databases, queue, ports and
store under a temporary directory, and brought down (databases dropped) afterwards.

Skipped, naming the missing service, where PostgreSQL or RabbitMQ does not answer: only the `cluster` tests skip.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.local_cluster import Cluster, log_file, missing_services, wait_for_first_sensor_tick
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
    ]  # fmt: skip
    env = _clean_env() | {STORE_ROOT_ENV: str(store)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600), command


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory) -> Iterator[RunningCluster]:
    """The cluster, up for the session: 2 workers, on an ONNX folder of four models written after the sensor's
    first tick."""
    problems = missing_services(os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER)
    if problems:
        pytest.skip("the cluster tests need PostgreSQL and RabbitMQ: " + "; ".join(problems))
    base = tmp_path_factory.mktemp("cluster")
    state, store, repository = base / "state", base / "store", base / "lab"
    repository.mkdir()
    tag = f"sommelier_test_{os.getpid()}"
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

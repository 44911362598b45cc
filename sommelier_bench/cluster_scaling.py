"""Wall time of `sommelier index` on the local cluster with 1 worker and with 2, in one run (issue 14).

Each worker count gets its own cluster (`deploy.local_cluster`: fresh databases, queue, ports, store), brought up
before the clock starts and down after; the models (`sommelier_bench.index_cost.generate_onnx_repository`) are written
after the daemon's first sensor tick, so `sommelier index` alone indexes them. The ratio is 1-worker wall time over
2-worker wall time (target ≥ 1.5 on 2 cores).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local_cluster import Cluster, down, missing_services, up, wait_for_first_sensor_tick
from sommelier_bench.index_cost import generate_onnx_repository

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ScalingRun:
    """One `sommelier index` of `models` new models on a cluster of `workers` workers."""

    workers: int
    models: int
    wall_s: float
    exit_status: int
    load_before: float
    """1-minute load average when the run started (the machine is shared)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def index_on_fresh_cluster(
    base: Path, workers: int, models: int, settings: dict, echo: Callable[[str], None] = print
) -> ScalingRun:
    """Bring a cluster of `workers` workers up under `base`, time `sommelier index` of `models` generated models
    on it, bring it down (dropping its databases)."""
    repository = base / "repository"
    repository.mkdir(parents=True, exist_ok=True)
    tag = f"sommelier_bench_{os.getpid()}_w{workers}"
    cluster = Cluster(
        state_dir=str(base / "state"),
        store_root=str(base / "store"),
        workers=workers,
        database_prefix=tag,
        queue=tag.replace("_", "-"),
        dagster_port=_free_port(),
        mlflow_port=_free_port(),
        repositories=[{"kind": "onnx", "name": "bench", "location": [str(repository)]}],
        index_settings=settings,
        webserver=False,
    )
    try:
        if up(cluster, echo=echo) != 0:
            raise RuntimeError(f"the cluster of {workers} workers did not come up; see {cluster.state}/logs")
        if not wait_for_first_sensor_tick(cluster):
            raise RuntimeError(f"the daemon's sensor never ticked; see {cluster.state}/logs/daemon.log")
        generate_onnx_repository(repository, models)
        env = os.environ | cluster.environment()
        load = os.getloadavg()[0]
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "sommelier_cli.main", "index"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            echo(result.stdout[-2000:] + result.stderr[-2000:])
        return ScalingRun(workers, models, wall, result.returncode, load)
    finally:
        down(cluster, echo=lambda line: None, drop=True)


def measure_cluster_scaling(
    base: Path,
    models: int,
    worker_counts: Sequence[int] = (1, 2),
    settings: dict | None = None,
    echo: Callable[[str], None] = print,
) -> list[ScalingRun]:
    """`index_on_fresh_cluster` for each worker count, in order; raises when PostgreSQL or RabbitMQ is missing."""
    problems = missing_services()
    if problems:
        raise RuntimeError("; ".join(problems))
    runs = []
    for workers in worker_counts:
        run = index_on_fresh_cluster(base / f"workers-{workers}", workers, models, settings or {}, echo)
        echo(f"{workers} worker(s): {models} models in {run.wall_s:.1f} s (exit {run.exit_status})")
        runs.append(run)
    return runs


def speedup(runs: Sequence[ScalingRun]) -> float:
    """Wall time with the fewest workers over wall time with the most."""
    fewest, most = min(runs, key=lambda r: r.workers), max(runs, key=lambda r: r.workers)
    return fewest.wall_s / most.wall_s

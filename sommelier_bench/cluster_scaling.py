"""Wall time of `sommelier index` on the local cluster with 1 worker and with 2, in one run (issue 14).

Each worker count gets its own cluster (`deploy.local_cluster`: fresh databases, queue, ports, store), brought up
before the clock starts and down after; the models (`sommelier_bench.index_cost.generate_onnx_repository`) are written
after the daemon's first sensor tick, so `sommelier index` alone indexes them. The ratio is 1-worker wall time over
2-worker wall time (target ≥ 1.5 on 2 cores); with several rounds (each worker count once per round, in turn, so a
slow spell of the shared machine falls on both), the median of the rounds' ratios.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploy.local_cluster import Cluster, down, missing_services, up, wait_for_first_sensor_tick
from sommelier_bench.index_cost import generate_onnx_repository
from sommelier_bench.process_cpu import ProcessCpu

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
    load_after: float = 0.0
    """1-minute load average when it ended: the run's own processes and whatever else ran meanwhile."""
    log: str = ""
    """Where the output of `sommelier index` went (per wave and per run, with the range each run covered)."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds per kind of process on the machine while it ran (`sommelier_bench.process_cpu`)."""
    round: int = 1
    """Which round of `measure_cluster_scaling` it belongs to."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_load_below(threshold: float | None, timeout_s: float, echo: Callable[[str], None] = print) -> float:
    """Wait until the 1-minute load average is below `threshold` (None: do not wait), at most `timeout_s`, polling
    every 5 s: bringing a cluster up (imports in every service) loads the machine for a minute. The load then."""
    deadline = time.monotonic() + timeout_s
    while threshold is not None and os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(5)
    load = os.getloadavg()[0]
    if threshold is not None and load >= threshold:
        echo(f"  1-min load still {load:.2f} after {timeout_s:.0f} s (wanted below {threshold}): measuring anyway")
    return load


def index_on_fresh_cluster(
    base: Path,
    workers: int,
    models: int,
    settings: dict,
    echo: Callable[[str], None] = print,
    settle_load: float | None = 1.0,
    settle_timeout_s: float = 180.0,
) -> ScalingRun:
    """Bring a cluster of `workers` workers up under `base`, wait (up to `settle_timeout_s`) for the 1-minute load
    to fall below `settle_load`, time `sommelier index` of `models` generated models on it, bring it down (dropping
    its databases)."""
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
        wait_for_load_below(settle_load, settle_timeout_s, echo)
        env = os.environ | cluster.environment()
        load = os.getloadavg()[0]
        started = time.perf_counter()
        with ProcessCpu() as cpu:
            result = subprocess.run(
                [sys.executable, "-m", "sommelier_cli.main", "index"],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
            )
        wall = time.perf_counter() - started
        log = base / "index.log"
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            echo(result.stdout[-2000:] + result.stderr[-2000:])
        return ScalingRun(workers, models, wall, result.returncode, load, os.getloadavg()[0], str(log), cpu.seconds())
    finally:
        down(cluster, echo=lambda line: None, drop=True)


def measure_cluster_scaling(
    base: Path,
    models: int,
    worker_counts: Sequence[int] = (1, 2),
    settings: dict | None = None,
    echo: Callable[[str], None] = print,
    settle_load: float | None = 1.0,
    rounds: int = 1,
) -> list[ScalingRun]:
    """`index_on_fresh_cluster` for each worker count, in order, `rounds` times (under `base/round-<n>/`); raises
    when PostgreSQL or RabbitMQ is missing."""
    problems = missing_services()
    if problems:
        raise RuntimeError("; ".join(problems))
    runs = []
    for number, workers in ((n, w) for n in range(1, rounds + 1) for w in worker_counts):
        where = base / f"round-{number}" / f"workers-{workers}"
        run = replace(index_on_fresh_cluster(where, workers, models, settings or {}, echo, settle_load), round=number)
        echo(
            f"round {number}, {workers} worker(s): {models} models in {run.wall_s:.1f} s (exit {run.exit_status};"
            f" 1-min load {run.load_before:.2f} before, {run.load_after:.2f} after; output in {run.log})"
        )
        busy = sum(run.cpu_seconds.values())
        echo(
            f"  CPU {busy:.1f} s ({busy / run.wall_s:.2f} of the cores on average): "
            + ", ".join(f"{kind} {s:.1f}" for kind, s in run.cpu_seconds.items())
        )
        runs.append(run)
    return runs


def round_speedups(runs: Sequence[ScalingRun]) -> list[float]:
    """Per round: wall time with the fewest workers over wall time with the most."""
    return [fewest.wall_s / most.wall_s for fewest, most in _ends_of_rounds(runs)]


def speedup(runs: Sequence[ScalingRun]) -> float:
    """The median of `round_speedups`."""
    return statistics.median(round_speedups(runs))


def cpu_bound_speedup(runs: Sequence[ScalingRun], cores: int) -> float:
    """The most `speedup` could have been on `cores` cores for the CPU the runs with the most workers used (the
    median over rounds): their processes (workers, MLflow's server, PostgreSQL, the driver, everything on the
    machine) need at least their CPU seconds ÷ `cores` of wall time, even with every core busy all the time."""
    ceilings = []
    for fewest, most in _ends_of_rounds(runs):
        floor_s = sum(most.cpu_seconds.values()) / max(1, cores)
        ceilings.append(fewest.wall_s / floor_s if floor_s > 0 else float("inf"))
    return statistics.median(ceilings)


def _ends_of_rounds(runs: Sequence[ScalingRun]) -> list[tuple[ScalingRun, ScalingRun]]:
    """Per round, in order: its run with the fewest workers and its run with the most."""
    ends = []
    for number in sorted({r.round for r in runs}):
        members = [r for r in runs if r.round == number]
        ends.append((min(members, key=lambda r: r.workers), max(members, key=lambda r: r.workers)))
    return ends

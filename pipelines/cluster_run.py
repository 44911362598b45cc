"""`sommelier index` on the cluster (`SOMMELIER_DEPLOYMENT=cluster`): the same jobs and waves, each step a Celery task.

`pipelines.index_run.main` calls `run_index_on_cluster(full=...)` when the deployment is `cluster` and returns its
exit status (0 indexed, 1 the index build or every model failed, 2 the cluster is not reachable, 3 another index
run holds the store lock — the same lock as the embedded run's, on the shared store root).

The waves are those of the embedded run (`pipelines.stages.WAVES`: per model, per model × device, per device, per
model again, the indexes), planned the same way (`pipelines.stages.stages_to_run`: only new, changed or damaged
models run). What differs is how a run executes: each is `dagster.execute_job` of the job reconstructed from
`pipelines.definitions` on the instance `$DAGSTER_HOME` names (PostgreSQL), with the Celery executor, so each step
is a task on the cluster's queue and any worker process runs it, reading and writing the shared store root. Runs of a
wave are in flight together (several per worker, so workers never wait for this process), and a model that fails
fails alone. A step whose worker dies is handed to another worker (late acknowledgement,
`sommelier_core.settings.celery_settings`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.jobs import CODE_LOCATION, JOB_BY_PARTITIONING
from pipelines.stages import DEVICE_WAVE, FIRST_WAVE, INDEX_WAVE, SECOND_WAVE, TABLE_WAVE, stages_to_run, stale_devices
from sommelier_core.settings import CELERY_QUEUE_ENV, DEFAULT_CELERY_QUEUE, celery_broker, celery_settings
from sommelier_core.stages import BY_NAME, PER_MODEL_STAGES, reads

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_PER_WORKER = 3
"""Runs of a wave in flight per worker: a run submits its next step a tick after the last, so one run per worker
would leave workers idle between steps."""
WORKER_PING_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ClusterRun:
    """One run to execute on the cluster: a job's stages for one partition, and whose failure it is."""

    stages: tuple[str, ...]
    partition_key: str | None
    label: str
    failure_key: str

    @property
    def job_name(self) -> str:
        return JOB_BY_PARTITIONING[BY_NAME[self.stages[0]].partitioning]


def live_workers(timeout_s: float = WORKER_PING_TIMEOUT_S) -> list[str]:
    """The Celery workers that answer a ping on the cluster's broker (their names, `<queue>-<n>@<host>`)."""
    from dagster_celery.make_app import make_app

    app = make_app({"broker": celery_broker(), "backend": "rpc://", "config_source": celery_settings()})
    queue = celery_settings()["task_default_queue"]
    try:
        replies = app.control.ping(timeout=timeout_s) or []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply if name.startswith(f"{queue}-"))


def reconstructable_job(job_name: str):
    """A job of `pipelines.definitions` as workers rebuild it: by module and name, not by pickling."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(CODE_LOCATION, "defs", working_directory=str(REPO_ROOT))
    return repository.get_reconstructable_job(job_name)


def execute_on_cluster(run: ClusterRun) -> tuple[bool, str, str]:
    """Execute one run with the Celery executor on the instance `$DAGSTER_HOME` names; (success, failure message,
    run id). Blocks until the run ends; called in a process of the driver's pool."""
    from dagster import AssetKey, DagsterInstance, execute_job

    from assets.partitions import PARTITIONS
    from pipelines.index_run import QUIET_RUN_CONFIG, failure_message, filed_under_location

    partitions_def = PARTITIONS.get(BY_NAME[run.stages[0]].partitioning)
    tags = {} if run.partition_key is None else dict(partitions_def.get_tags_for_partition_key(run.partition_key))
    with DagsterInstance.get() as instance:
        filed_under_location(instance)
        result = execute_job(
            reconstructable_job(run.job_name),
            instance=instance,
            run_config=QUIET_RUN_CONFIG,
            tags=tags,
            raise_on_error=False,
            asset_selection=[AssetKey(stage) for stage in run.stages],
        )
        return result.success, ("" if result.success else failure_message(result)), result.run_id


def _pool_process_setup() -> None:
    """Make a pool process end when the driver does (Linux `PR_SET_PDEATHSIG`): killing `sommelier index` stops
    the runs it drives, not only itself. Also silence Celery's warning that each run's executor registers the
    step task again under its name (dagster-celery does so by design; the first registration is the same task)."""
    import ctypes
    import signal
    import warnings

    from celery.exceptions import DuplicateTaskNameWarning

    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the pool's processes then end when their current run does
        pass


def run_pool(workers: int):
    """The processes that drive a wave's runs at once: forked from this one (definitions already imported), several
    per worker. Processes, not threads: Dagster's run setup reconfigures Python logging, which deadlocks threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=max(1, RUNS_PER_WORKER * workers),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_pool_process_setup,
    )


def index_on_cluster(instance, resources: dict, full: bool = False, echo: Callable[[str], None] = print, workers=2):
    """Register every listed model, run the stages each needs wave by wave on the cluster, then both indexes.

    Returns the embedded run's summary type (`pipelines.index_run.IndexRunSummary`), with wall time per wave in
    `stage_seconds` (a step's own time is in the Dagster UI: steps of many runs overlap here).
    """
    from assets.partitions import model_device_key
    from pipelines.index_run import IndexRunSummary, register_listed_models
    from resources.store import open_store

    started = time.perf_counter()
    summary = IndexRunSummary()
    entries, devices = register_listed_models(instance, resources["repositories"].list_models(), summary, echo)
    if not entries:
        return summary
    model_ids = summary.models
    store = open_store("")  # the resource's root is an EnvVar only Dagster resolves: `$SOMMELIER_HOME`, as here
    parents = reads()
    plan = {e.model_id: PER_MODEL_STAGES if full else stages_to_run(store, e, parents) for e in entries}
    summary.up_to_date = sorted(m for m, stages in plan.items() if not stages)
    pending = [m for m in model_ids if plan[m]]
    echo(
        f"Indexing {len(model_ids)} models from {store.root} on the cluster ({workers} workers)"
        + (f"; {len(summary.up_to_date)} up to date, {len(pending)} to run" if summary.up_to_date else "")
    )

    def wave(name: str, runs: list[ClusterRun]) -> list[ClusterRun]:
        t0 = time.perf_counter()
        done: list[ClusterRun] = []
        runs = [r for r in runs if r.stages]
        if not runs:
            return done
        with run_pool(workers) as pool:
            futures = [(r, pool.submit(execute_on_cluster, r)) for r in runs]
            for i, (run, future) in enumerate(futures, 1):
                try:
                    ok, message, _ = future.result()
                except Exception as exc:  # a run that could not even start (e.g. the broker went away)
                    ok, message = False, f"{type(exc).__name__}: {exc}"
                if ok:
                    done.append(run)
                    echo(f"  [{name} {i}/{len(runs)}] {run.label}  ok")
                else:
                    summary.failures[run.failure_key] = message
                    echo(f"  [{name} {i}/{len(runs)}] {run.label}  FAILED: {message}")
        summary.stage_seconds[name] += time.perf_counter() - t0
        return done

    def per_model(stages: tuple[str, ...], models: list[str]) -> list[ClusterRun]:
        return [ClusterRun(tuple(s for s in plan[m] if s in stages), m, m, m) for m in models]

    echo("Stage wave 1: fetch → convert → outputs → cushions → profile")
    ingest = [m for m in pending if set(plan[m]) & set(FIRST_WAVE)]
    converted = {r.partition_key for r in wave("ingest", per_model(FIRST_WAVE, ingest))}
    analysed = sorted(converted | {m for m in pending if m not in set(ingest)})
    echo(f"Stage wave 2: latency and operator profile per device ({', '.join(devices)}), operator tables")
    to_profile = [(m, d) for m in [*summary.up_to_date, *analysed] for d in stale_devices(store, m, devices)]
    wave(
        "device",
        [ClusterRun(DEVICE_WAVE, model_device_key(m, d), f"{m} on {d}", m) for m, d in to_profile],
    )
    if to_profile:
        wave("table", [ClusterRun(TABLE_WAVE, d, f"operator table {d}", f"<operator table {d}>") for d in devices])
    echo("Stage wave 3: peers → compare → bound")
    wave("analysis", per_model(SECOND_WAVE, [m for m in analysed if set(plan[m]) & set(SECOND_WAVE)]))
    echo("Stage wave 4: semantic index, resource index")
    wave("index", [ClusterRun(INDEX_WAVE, None, "indexes", "<index>")])
    summary.total_seconds = time.perf_counter() - started
    ok = len(model_ids) - len([m for m in summary.failures if not m.startswith("<")])
    echo(
        f"Indexed {ok}/{len(model_ids)} models in {summary.total_seconds:.1f}s on the cluster"
        + (f"; {len(summary.failures)} failed (see above)" if summary.failures else "")
    )
    return summary


def run_index_on_cluster(full: bool = False, wait: bool = False, echo: Callable[[str], None] = print) -> int:
    """Index every listed model on the cluster the environment names (`deploy/local-cluster env`), holding the
    store lock (`wait`: for another index run to release it); exit status."""
    import os

    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from sommelier_core.settings import store_root
    from sommelier_core.store.store_lock import StoreLock, StoreLocked

    if not os.environ.get("DAGSTER_HOME"):
        print(
            'error: DAGSTER_HOME is not set; point sommelier at the cluster first: eval "$(deploy/local-cluster env)"',
            file=sys.stderr,
        )
        return 2
    try:
        workers = live_workers()
    except Exception as exc:  # the broker itself does not answer
        print(
            f"error: the Celery broker {celery_broker()} does not answer ({exc}); is the cluster up?", file=sys.stderr
        )
        return 2
    if not workers:
        queue = os.environ.get(CELERY_QUEUE_ENV) or DEFAULT_CELERY_QUEUE
        print(f"error: no Celery worker answers on queue {queue!r}; run `deploy/local-cluster up`", file=sys.stderr)
        return 2
    try:
        with StoreLock(store_root(), wait=wait), DagsterInstance.get() as instance:
            summary = index_on_cluster(instance, build_resources("cluster"), full, echo, workers=len(workers))
    except StoreLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    failed = {m for m in summary.failures if not m.startswith("<")}
    every_model_failed = bool(summary.models) and set(summary.models) <= failed
    return 1 if {"<index>", "<repositories>"} & set(summary.failures) or every_model_failed else 0

"""`sommelier index` on the cluster (`SOMMELIER_DEPLOYMENT=cluster`): the same jobs and waves, each step a Celery task.

`pipelines.index_run.main` calls `run_index_on_cluster(full=...)` when the deployment is `cluster` and returns its
exit status (0 indexed, 1 the index build or every model failed, 2 the cluster is not reachable, 3 another index
run holds the store lock — the same lock as the embedded run's, on the shared store root).

The waves are those of the embedded run (`pipelines.stages.WAVES`: per model, per model × device, per device, per
model again, the indexes), planned the same way (`pipelines.stages.stages_to_run`: only new, changed or damaged
models run). What differs is how a run executes: each is `dagster.execute_job` of the job reconstructed from
`pipelines.definitions` on the instance `$DAGSTER_HOME` names (PostgreSQL), with the Celery executor, so each step
is a task on the cluster's queue and any worker process runs it, reading and writing the shared store root. Runs of a
wave are in flight together (several per worker, so workers never wait for this process). A step whose worker dies
is handed to another worker (late acknowledgement, `sommelier_core.settings.celery_settings`).

Like the embedded run, a run covers a range of consecutive partitions that need the same stages (models, or models
on one device in the device wave), cut by the same code (`pipelines.stages.wave_chunks`), so Dagster's cost per run
and per step (creating the run, its orchestrating process, a Celery task and the step's set-up on a worker) is shared
by the range's models. The range size is chosen per wave: one run per worker and one more (`range_size`). A range
run that fails is run again one model per run, from the steps it did not finish (`ClusterRun.split`), so a model
that fails fails alone, with its own error, and the others are indexed.

Stopping (issue 14): SIGINT, SIGTERM or SIGHUP (which `sommelier index` passes on) stop the driver between runs, as
they stop the embedded one (`pipelines.index_run.STOP`). It submits nothing more, marks its runs in progress
CANCELING and signals the processes driving them, whose Celery executors revoke their queued steps; runs that have
not ended after `STOP_GRACE_S` (a step already executing on a worker: a solo-pool worker cannot be interrupted,
it finishes the step) have their processes killed and are marked CANCELED, and MLflow runs this process opened
KILLED. It exits 128 + the signal's number. Every run carries the driver's `<host>:<pid>`
(`pipelines.index_run.OWNER_RUN_TAG`), so the next `sommelier index` cancels the runs of a driver killed outright
(SIGKILL) and plans from what is stored: stages are idempotent, so nothing runs twice into MLflow.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, replace
from functools import partial as bind
from pathlib import Path

from pipelines.jobs import CODE_LOCATION, JOB_BY_PARTITIONING
from pipelines.stages import (
    DEVICE_WAVE,
    FIRST_WAVE,
    INDEX_WAVE,
    SECOND_WAVE,
    TABLE_WAVE,
    stages_left,
    stages_to_run,
    stale_devices,
    wave_chunks,
)
from sommelier_core.settings import CELERY_QUEUE_ENV, DEFAULT_CELERY_QUEUE, celery_broker, celery_settings
from sommelier_core.stages import BY_NAME, PER_MODEL_STAGES, reads

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_PER_WORKER = 3
"""Runs of a wave in flight per worker: a run submits its next step a tick after the last, so one run per worker
would leave workers idle between steps."""
WORKER_PING_TIMEOUT_S = 5.0
WORKER_PING_FIRST_S = 0.5
STOP_GRACE_S = 15.0
"""How long a stopped driver waits for its canceled runs to end on their own before it kills their processes:
long enough for the executors to revoke their queued steps and report the runs CANCELED."""
POLL_S = 0.5
"""How often the driver looks at its runs, and at stop requests, while a wave is in flight."""
EXECUTOR_TICK_S = 0.25
"""How often a run's Celery executor looks at its steps (dagster-celery's default: once a second). A range run's
steps follow one another, and each waited half a tick on average before the next was submitted, while a worker
could sit idle; each look asks the result backend about the run's steps in flight, so a shorter tick costs the run
processes CPU (0.1 s: about 4 CPU-s more per 48 models on 2 cores)."""


@dataclass(frozen=True)
class ClusterRun:
    """One run to execute on the cluster: a job's stages for one partition (or none), and whose failure it is; or,
    with `members`, for the partition-key range from the first member's partition to the last's."""

    stages: tuple[str, ...]
    partition_key: str | None
    label: str
    failure_key: str
    members: tuple[ClusterRun, ...] = ()
    """A range run's one-partition runs, in partition order: what it stands for, and what it is split into (from
    the stages it did not finish) when it fails, so that the model at fault fails alone."""

    @property
    def job_name(self) -> str:
        return JOB_BY_PARTITIONING[BY_NAME[self.stages[0]].partitioning]

    @property
    def partition_range(self) -> tuple[str, str] | None:
        """(first, last) partition key of a range run; None for a run of one partition or none."""
        return (self.members[0].partition_key, self.members[-1].partition_key) if self.members else None

    @property
    def size(self) -> int:
        """Partitions (models, or models on one device) the run covers; 1 for one or none."""
        return len(self.members) or 1

    def split(self, stages: tuple[str, ...]) -> list[ClusterRun]:
        """A failed range run's members, each to run `stages` (those the range did not finish) on its own."""
        return [replace(member, stages=stages) for member in self.members]


def in_ranges(
    selection_of: Callable[[str], tuple[str, ...]],
    keys: list[str],
    order: list[str],
    size: int,
    single: Callable[[tuple[str, ...], str], ClusterRun],
) -> list[ClusterRun]:
    """A wave's runs: `keys` (model ids) grouped by the stages each needs (`selection_of`) and cut into ranges of
    at most `size` partitions consecutive in `order` (`pipelines.stages.wave_chunks`, as the embedded driver cuts
    them); `single(stages, key)` is the run of one key. A chunk of one is that run; a longer one a range run over
    its members."""
    runs = []
    for selection, chunk in wave_chunks(keys, selection_of, order, size):
        members = [single(selection, key) for key in chunk]
        if len(members) == 1 or not selection:
            runs += members
            continue
        first, last = members[0], members[-1]
        label = f"{first.label} … {last.label}"
        runs.append(ClusterRun(selection, None, label, f"<range {label}>", tuple(members)))
    return runs


RANGE_RUNS_PER_WAVE_EXTRA = 1
"""Range runs a wave is cut into beyond one per worker (`range_size`)."""


def range_size(partitions: int, workers: int, partitions_per_run: int) -> int:
    """Partitions per run for a wave of `partitions` on `workers` workers:
    `min(partitions_per_run, ceil(partitions / (workers + 1)))`, at least 1.

    Dagster's cost per run is paid once per run and, on the cluster, once per step: each step is a Celery task
    with its own set-up on the worker (the step's plan, resources, MLflow's client, the step's events; about 2 s
    on 2 cores before `pooled_instance`, whether the step covered 8 models or 16). So a wave should be cut into as
    few runs as keep every worker busy: one per worker, plus one whose next step is queued while another run's
    process waits for its next tick (the Celery executor looks at its steps once a second). More runs than that
    only add tasks: 48 models on 2 workers in 6 ranges of 8 (one per slot of the pool) ran 68 tasks, against 38
    for 1 worker in 3 ranges of 16. Never more than `partitions_per_run` (the setting the embedded driver uses),
    so a large wave is still cut into many runs, at most `pool_size` in flight at once."""
    return max(1, min(partitions_per_run, math.ceil(partitions / (workers + RANGE_RUNS_PER_WAVE_EXTRA))))


def live_workers(timeout_s: float = WORKER_PING_TIMEOUT_S) -> list[str]:
    """The Celery workers that answer a ping on the cluster's broker (their names, `<queue>-<n>@<host>`).

    Celery's ping collects replies for its whole timeout, so it is asked for `WORKER_PING_FIRST_S` first (idle
    workers on a reachable broker answer within milliseconds), and for `timeout_s` only when none answered then:
    every `sommelier index` on the cluster would otherwise start `timeout_s` late."""
    from dagster_celery.make_app import make_app

    app = make_app({"broker": celery_broker(), "backend": "rpc://", "config_source": celery_settings()})
    queue = celery_settings()["task_default_queue"]
    names: list[str] = []
    try:
        for wait_s in (min(WORKER_PING_FIRST_S, timeout_s), timeout_s):
            replies = app.control.ping(timeout=wait_s) or []
            names = sorted(name for reply in replies for name in reply if name.startswith(f"{queue}-"))
            if names:
                break
    finally:
        app.close()
    return names


def reconstructable_job(job_name: str):
    """A job of `pipelines.definitions` as workers rebuild it: by module and name, not by pickling."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(CODE_LOCATION, "defs", working_directory=str(REPO_ROOT))
    return repository.get_reconstructable_job(job_name)


POOL_RECYCLE_S = 3600
"""How long a pooled PostgreSQL connection of a cluster process's instance is kept before it is opened again."""


def pooled_instance(instance):
    """`instance` made cheap for the many queries a run or a step makes on PostgreSQL: its storages hold a pooled
    connection (Dagster's `optimize_for_webserver`, what its webserver does, with no statement timeout), where
    dagster-postgres otherwise opens a connection per query (≈ 4.5 ms here against 0.06 ms for a query on an open
    one), whose event log remembers its tables (`remember_tables`); and "does this partition exist" is answered
    from the set read once (`pipelines.index_run.remember_partitions`: about 30 queries per model otherwise). A
    no-op for storages that are not PostgreSQL's. Used by the driver's run processes and by the workers
    (`deploy.celery_app`)."""
    from pipelines.index_run import remember_partitions

    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=2)
    remember_partitions(instance)
    remember_tables(instance.event_log_storage)
    return instance


def remember_tables(event_log) -> None:
    """Remember the tables the event log's database has once it has said so: dagster-postgres asks whether a
    table exists while it stores each asset materialization, on a second connection opened while the event's own is
    held. With the pool of one connection `pooled_instance` keeps, that second one is opened and closed each time:
    2.8 s of the two workers' 19 s of Dagster's own step time for 48 models (py-spy). A table not seen yet is
    still asked about."""
    if getattr(event_log, "_sommelier_tables", None) is not None or not hasattr(event_log, "has_table"):
        return
    known: set[str] = set()
    ask = event_log.has_table

    def has_table(table_name: str) -> bool:
        if table_name not in known and ask(table_name):
            known.add(table_name)
        return table_name in known

    event_log.has_table = has_table
    event_log._sommelier_tables = known


def execute_on_cluster(run: ClusterRun, owner: str) -> tuple[bool, str, str, frozenset[str]]:
    """Execute one run with the Celery executor on the instance `$DAGSTER_HOME` names, tagged as `owner`'s (the
    driver's `<host>:<pid>`, so a stop or the next index run finds it); (success, failure message, run id, the
    steps that succeeded). Blocks until the run ends; called in a process of the driver's pool."""
    from dagster import AssetKey, DagsterInstance, execute_job

    from assets.partitions import PARTITIONS
    from pipelines.index_run import (
        OWNER_RUN_TAG,
        QUIET_RUN_CONFIG,
        failure_message,
        filed_under_location,
        finished_steps,
        range_tags,
    )

    partitions_def = PARTITIONS.get(BY_NAME[run.stages[0]].partitioning)
    if run.partition_range is not None:
        tags = range_tags(*run.partition_range)
    elif run.partition_key is not None:
        tags = dict(partitions_def.get_tags_for_partition_key(run.partition_key))
    else:
        tags = {}
    tags[OWNER_RUN_TAG] = owner
    with DagsterInstance.get() as instance:
        pooled_instance(instance)
        filed_under_location(instance)
        result = execute_job(
            reconstructable_job(run.job_name),
            instance=instance,
            run_config=QUIET_RUN_CONFIG,
            tags=tags,
            raise_on_error=False,
            asset_selection=[AssetKey(stage) for stage in run.stages],
        )
        message = "" if result.success else failure_message(result)
        return result.success, message, result.run_id, finished_steps(result)


def _pool_process_setup() -> None:
    """Make a pool process end when the driver does (Linux `PR_SET_PDEATHSIG`): killing `sommelier index` stops
    the runs it drives, not only itself. A stop signal outside a run ends the process quietly (inside one, Dagster
    takes it and cancels the run); the driver's own stop handling, inherited through fork, is undone. Also silence
    Celery's warning that each run's executor registers the step task again under its name (dagster-celery does so
    by design; the first registration is the same task). Its executor looks at its steps every `EXECUTOR_TICK_S`."""
    import ctypes
    import warnings

    import dagster_celery.core_execution_loop as executor_loop
    from celery.exceptions import DuplicateTaskNameWarning

    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
    executor_loop.TICK_SECONDS = EXECUTOR_TICK_S
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the pool's processes then end when their current run does
        pass


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def pool_size(workers: int) -> int:
    """Runs in flight at once for `workers` Celery workers."""
    return max(1, RUNS_PER_WORKER * workers)


def run_pool(workers: int):
    """The processes that drive a wave's runs at once: forked from this one (definitions already imported), several
    per worker. Processes, not threads: Dagster's run setup reconfigures Python logging, which deadlocks threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=pool_size(workers),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_pool_process_setup,
    )


def runs_in_progress(instance, owner: str) -> list:
    """The Dagster runs `owner` (a driver's `<host>:<pid>`) executes that have not ended."""
    from dagster import DagsterRunStatus, RunsFilter

    from pipelines.index_run import IN_PROGRESS_STATUSES, OWNER_RUN_TAG

    statuses = [DagsterRunStatus(s) for s in IN_PROGRESS_STATUSES]
    return list(instance.get_runs(filters=RunsFilter(statuses=statuses, tags={OWNER_RUN_TAG: owner})))


def drive_wave(
    runs: list[ClusterRun],
    workers: int,
    on_result: Callable[[ClusterRun, bool, str, frozenset[str]], list[ClusterRun] | None],
    on_stop: Callable[[dict[Future, ClusterRun]], None],
) -> None:
    """Execute `runs` in a pool of processes, at most `pool_size(workers)` at once (so every submitted run is being
    executed, none waits in the pool), telling `on_result` each one's outcome (success, failure message, the steps
    that succeeded) as it ends; the runs `on_result` returns (a failed range's models, one per run) are executed
    next, before the rest. A stop request (`pipelines.index_run.STOP`) submits nothing more: `on_stop` gets the
    runs in flight, then the request goes on."""
    from pipelines.index_run import STOP, Interrupted

    pending = list(runs)
    in_flight: dict[Future, ClusterRun] = {}
    pool = run_pool(workers)
    try:
        while pending or in_flight:
            STOP.check()
            while pending and len(in_flight) < pool_size(workers):
                run = pending.pop(0)
                in_flight[pool.submit(execute_on_cluster, run, _driver())] = run
            finished, _ = wait_for_futures(in_flight, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                pending[:0] = on_result(in_flight.pop(future), *_outcome(future)) or []
    except (Interrupted, KeyboardInterrupt):
        on_stop(in_flight)
        _kill_pool(pool)
        raise
    pool.shutdown()


def _driver() -> str:
    from sommelier_core.store.store_lock import owner_label

    return owner_label()


def _outcome(future: Future) -> tuple[bool, str, frozenset[str]]:
    try:
        ok, message, _, finished = future.result()
    except BaseException as exc:  # a run that could not even start (e.g. the broker went away), or was stopped
        return False, f"{type(exc).__name__}: {exc}", frozenset()
    return ok, message, finished


def stop_runs(instance, in_flight: dict[Future, ClusterRun], grace_s: float = STOP_GRACE_S) -> None:
    """Cancel the runs this driver has in flight: mark them CANCELING and signal the processes driving them, whose
    Celery executors then revoke their queued steps and end the runs CANCELED; wait up to `grace_s` for them.
    Runs still going after that (a step executing on a worker finishes there) are left to `_kill_pool` and
    `close_own_runs`."""
    import multiprocessing

    for run in runs_in_progress(instance, _driver()):
        instance.report_run_canceling(run, message="sommelier index was stopped: canceling its run")
    for child in multiprocessing.active_children():
        _signal(child.pid, signal.SIGTERM)
    wait_for_futures(list(in_flight), timeout=grace_s)


def _kill_pool(pool, timeout_s: float = 15.0) -> None:
    """Kill whatever is left of the pool's processes and drop the runs it was not given yet. Killed again and
    joined until none is left (at most `timeout_s`): the pool's own thread may still start a process in place of
    one that ended, and a killed one may take a moment to be reaped on a loaded machine."""
    import multiprocessing

    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + timeout_s
    children = multiprocessing.active_children()
    while children and time.monotonic() < deadline:
        for child in children:
            _signal(child.pid, signal.SIGKILL)
        for child in children:
            child.join(timeout=0.5)
        children = multiprocessing.active_children()


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def index_on_cluster(instance, resources: dict, full: bool = False, echo: Callable[[str], None] = print, workers=2):
    """Register every listed model, run the stages each needs wave by wave on the cluster, then both indexes.

    Returns the embedded run's summary type (`pipelines.index_run.IndexRunSummary`), with wall time per wave in
    `stage_seconds` (a step's own time is in the Dagster UI: steps of many runs overlap here).
    """
    from assets.partitions import model_device_key, models_partitions
    from pipelines.index_run import IndexRunSummary, register_listed_models, wave_selection
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

    order = instance.get_dynamic_partitions(models_partitions.name)
    per_run = max(1, resources["settings"].partitions_per_run)

    def wave(name: str, runs: list[ClusterRun]) -> list[ClusterRun]:
        """Execute a wave's runs; the one-partition runs done (a range's members when it succeeded)."""
        t0 = time.perf_counter()
        done: list[ClusterRun] = []
        runs = [r for r in runs if r.stages]
        total, ended = sum(r.size for r in runs), 0

        def on_result(run: ClusterRun, ok: bool, message: str, finished: frozenset[str]) -> list[ClusterRun]:
            nonlocal ended
            if ok or (run.members and not stages_left(run.stages, finished)):
                done.extend(run.members or [run])
                ended += run.size
                span = f"{ended - run.size + 1}–{ended}" if run.members else f"{ended}"
                echo(f"  [{name} {span}/{total}] {run.label}  ok")
                return []
            if run.members:  # fail alone: each model of the range on its own, from the stages it did not finish
                echo(f"  [{name}] {run.label} in one run FAILED ({message}); running them one model per run")
                return run.split(stages_left(run.stages, finished))
            ended += 1
            summary.failures[run.failure_key] = message
            echo(f"  [{name} {ended}/{total}] {run.label}  FAILED: {message}")
            return []

        if runs:
            drive_wave(runs, workers, on_result, lambda in_flight: stop_runs(instance, in_flight))
        summary.stage_seconds[name] += time.perf_counter() - t0
        return done

    def per_model(stages: tuple[str, ...], models: list[str]) -> list[ClusterRun]:
        size = range_size(len(models), workers, per_run)
        return in_ranges(
            bind(wave_selection, plan, stages, True), models, order, size, lambda s, m: ClusterRun(s, m, m, m)
        )

    echo("Stage wave 1: fetch → convert → outputs → cushions → profile")
    ingest = [m for m in pending if set(plan[m]) & set(FIRST_WAVE)]
    converted = {r.partition_key for r in wave("ingest", per_model(FIRST_WAVE, ingest))}
    analysed = sorted(converted | {m for m in pending if m not in set(ingest)})
    echo(f"Stage wave 2: latency and operator profile per device ({', '.join(devices)}), operator tables")
    to_profile = {d: [m for m in [*summary.up_to_date, *analysed] if stale_devices(store, m, [d])] for d in devices}
    size = range_size(sum(len(models) for models in to_profile.values()), workers, per_run)
    device_runs = []
    for d, models in to_profile.items():  # ranges of models on one device (a range of model × device keys)

        def on_device(stages: tuple[str, ...], m: str, d: str = d) -> ClusterRun:
            return ClusterRun(stages, model_device_key(m, d), f"{m} on {d}", m)

        device_runs += in_ranges(lambda _m: DEVICE_WAVE, models, order, size, on_device)
    wave("device", device_runs)
    if device_runs:
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
    echo("Wall seconds per wave: " + ", ".join(f"{name} {s:.1f}" for name, s in summary.stage_seconds.items()))
    return summary


def run_index_on_cluster(full: bool = False, wait: bool = False, echo: Callable[[str], None] = print) -> int:
    """Index every listed model on the cluster the environment names (`deploy/local-cluster env`), holding the
    store lock (`wait`: for another index run to release it); exit status (128 + the signal's number when a signal
    stopped it)."""
    from pipelines.index_run import STOP, Interrupted, watch_parent
    from sommelier_core.defaults import INDEX_PARENT_PID_ENV

    STOP.install()
    if os.environ.get(INDEX_PARENT_PID_ENV, "").isdigit():
        watch_parent(int(os.environ[INDEX_PARENT_PID_ENV]))
    try:
        return _index_if_reachable(full, wait, echo)
    except (Interrupted, KeyboardInterrupt):
        signum = STOP.signum or signal.SIGINT
        print(
            f"Stopped by {signal.Signals(signum).name}: its runs are canceled, what was stored is kept; "
            "the next `sommelier index` resumes.",
            file=sys.stderr,
        )
        return 128 + signum


def _index_if_reachable(full: bool, wait: bool, echo: Callable[[str], None]) -> int:
    """`run_index_on_cluster` once stop requests are handled: 2 when the cluster does not answer, 3 when the store
    is locked, else the index run's status."""
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
            summary = _index_locked(instance, build_resources("cluster"), full, echo, len(workers))
    except StoreLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    failed = {m for m in summary.failures if not m.startswith("<")}
    every_model_failed = bool(summary.models) and set(summary.models) <= failed
    return 1 if {"<index>", "<repositories>"} & set(summary.failures) or every_model_failed else 0


def _index_locked(instance, resources: dict, full: bool, echo: Callable[[str], None], workers: int):
    """One cluster index run under the store lock: close what a killed driver left open (its Dagster runs
    canceled, MLflow runs of gone processes KILLED), index, and on a stop request close this driver's runs that
    are still open before the stop goes on."""
    from pipelines.index_run import Interrupted, close_abandoned_runs, close_own_runs
    from resources.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker()  # `$MLFLOW_TRACKING_URI`: the cluster resource's EnvVar is resolved by Dagster only
    close_abandoned_runs(instance, tracker, echo)
    try:
        return index_on_cluster(instance, resources, full, echo, workers=workers)
    except (Interrupted, KeyboardInterrupt):
        close_own_runs(instance, tracker)
        raise
